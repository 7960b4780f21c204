"""API keys: their format, their storage as hashes, and the FastAPI dependency that checks them.

A key is `hk_` plus `secrets.token_urlsafe(32)` (256 random bits), shown once at creation.
The database keeps its first 11 characters (`prefix`, for lookup and for people to tell keys
apart) and HMAC-SHA256 of the whole key under `HAPPYKUBE_API_KEY_PEPPER`: a stolen table is
useless without the pepper, and a key is looked up by prefix, then compared in constant time.

Scopes: `emotion:write` (analyse), `history:read` (report, export), `history:write` (store a
message, settings, erasure); `admin` stands for every scope. 401 for a missing, unknown or
revoked key; 403 for a key without the scope; then the key's rate limit (429).

Keys must keep working while the database is down, because analysis without a `user_id`
does not need it. So a verified key is remembered for `key_cache_s` and, when the database
cannot be reached afterwards, trusted past that; a revocation bites within `key_cache_s`.
`HAPPYKUBE_BOOTSTRAP_API_KEY` (quick start) is registered on first use with a fixed id and
is known without the database at all.
"""

# No `from __future__ import annotations`: the dependency `require_scope` returns is a
# closure, which Ray pickles by value with only the globals its body uses, so a string
# annotation such as "Request" could not be resolved by FastAPI in the replica.

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.crud import upsert
from db.models import ApiKey, utcnow
from db.session import Database
from serve_app.errors import ForbiddenError, StorageUnavailableError, UnauthorizedError
from serve_app.observability import get_logger
from serve_app.ratelimit import limit_key, limit_user

log = get_logger(__name__)

HEADER = "X-API-Key"
KEY_MARK = "hk_"
PREFIX_CHARS = 11  # "hk_" and 8 random characters: 48 bits, plenty to find a key's row
EMOTION_WRITE = "emotion:write"
HISTORY_READ = "history:read"
HISTORY_WRITE = "history:write"
ADMIN = "admin"
SCOPES = (EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE, ADMIN)
BOOTSTRAP_SCOPES = (EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE)
_BOOTSTRAP_ID_SPACE = uuid.UUID("3f0c9a6e-4b1d-5e7a-9c2f-6a8b0d1e2f30")
_MAX_KEY_CHARS = 256
_TOUCH_EVERY_S = 60.0  # last_used_at is kept to the minute: one write per key per minute
_DB_TIMEOUT_S = 2.0
_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)


def generate_key() -> str:
    """A new key: the recognisable mark and 32 random bytes, URL-safe."""
    return KEY_MARK + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str:
    return key[:PREFIX_CHARS]


def hash_key(pepper: bytes, key: str) -> str:
    """The stored form of a key: HMAC-SHA256 under the pepper, hex."""
    return hmac.new(pepper, b"api-key\0" + key.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_scopes(values: Sequence[str]) -> list[str]:
    """Scopes from repeated and/or comma-separated values; unknown ones are refused."""
    scopes = sorted({s.strip() for value in values for s in value.split(",") if s.strip()})
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {sorted(unknown)}")
    return scopes


@dataclass(frozen=True)
class Caller:
    """An authenticated key: who is calling and what it may do."""

    key_id: str
    name: str
    scopes: frozenset[str]
    rate_limit: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


async def create_key(
    session: AsyncSession,
    *,
    pepper: bytes,
    name: str,
    scopes: Sequence[str],
    actor: str,
    rate_limit: int | None = None,
) -> tuple[str, ApiKey]:
    """Store a new key and audit it; return the key (its only appearance) and its row."""
    key = generate_key()
    row = ApiKey(
        key_hash=hash_key(pepper, key),
        prefix=key_prefix(key),
        name=name,
        scopes=parse_scopes(scopes),
        rate_limit=rate_limit,
    )
    session.add(row)
    await session.flush()
    details = {"name": name, "scopes": row.scopes, "prefix": row.prefix}
    await audit.record(
        session, actor=actor, action=audit.KEY_CREATED, target=str(row.id), details=details
    )
    return key, row


async def list_keys(session: AsyncSession, *, include_revoked: bool = True) -> Sequence[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.created_at)
    if not include_revoked:
        statement = statement.where(ApiKey.revoked_at.is_(None))
    return (await session.scalars(statement)).all()


async def revoke_key(session: AsyncSession, *, key: str, actor: str) -> ApiKey | None:
    """Revoke the key whose id or visible prefix is `key`; None when there is no such key."""
    try:
        condition = ApiKey.id == uuid.UUID(key)
    except ValueError:
        condition = ApiKey.prefix == key
    rows = (await session.scalars(select(ApiKey).where(condition))).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await audit.record(
            session,
            actor=actor,
            action=audit.KEY_REVOKED,
            target=str(row.id),
            details={"name": row.name, "prefix": row.prefix},
        )
    return row


@dataclass
class _Verified:
    caller: Caller
    checked_at: float


class KeyVerifier:
    """Checks presented keys against the database, remembering recent answers."""

    def __init__(
        self, pepper: bytes, *, cache_s: float = 10.0, bootstrap_key: str | None = None
    ) -> None:
        self.pepper = pepper
        self.cache_s = cache_s
        self._verified: dict[str, _Verified] = {}
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._bootstrap: tuple[str, str] | None = None  # (key, hash) until registered
        if bootstrap_key:
            digest = hash_key(pepper, bootstrap_key)
            caller = Caller(
                key_id=str(uuid.uuid5(_BOOTSTRAP_ID_SPACE, digest)),
                name="bootstrap",
                scopes=frozenset(BOOTSTRAP_SCOPES),
            )
            # Never expires as a fallback: the quick start works with no database at all.
            self._verified[digest] = _Verified(caller, float("-inf"))
            self._bootstrap = (bootstrap_key, digest)

    async def verify(self, key: str | None, database: Database | None) -> Caller:
        """The caller behind `key`; raise 401 (bad key) or 503 (key store unreachable)."""
        if not key:
            raise UnauthorizedError(f"missing {HEADER} header")
        if len(key) > _MAX_KEY_CHARS:
            raise UnauthorizedError("unknown API key")
        digest = hash_key(self.pepper, key)
        known = self._verified.get(digest)
        now = time.monotonic()
        if known is not None and now - known.checked_at < self.cache_s:
            return known.caller
        if database is None:
            if known is not None:
                return known.caller
            raise UnauthorizedError("unknown API key")
        try:
            row = await asyncio.wait_for(self._lookup(database, key, digest), _DB_TIMEOUT_S)
        except _UNAVAILABLE as exc:
            if known is not None:
                # Seen before: keep serving through the outage, and ask the database again
                # only after `cache_s`, not on every request while it is down.
                self._verified[digest] = _Verified(known.caller, now)
                return known.caller
            log.warning("key_store_unavailable", error=type(exc).__name__)
            raise StorageUnavailableError("the API key store is unavailable") from exc
        if row is None or row.revoked_at is not None:
            self._verified.pop(digest, None)
            raise UnauthorizedError("revoked API key" if row else "unknown API key")
        caller = Caller(str(row.id), row.name, frozenset(row.scopes), row.rate_limit)
        if len(self._verified) > 10_000:
            self._verified.clear()  # bounded; a cleared entry costs one database lookup
        self._verified[digest] = _Verified(caller, now)
        self._touch_later(database, caller.key_id, now)
        return caller

    async def _lookup(self, database: Database, key: str, digest: str) -> ApiKey | None:
        async with database.session() as session:
            if self._bootstrap is not None:
                await self._register_bootstrap(session)
            rows = await session.scalars(select(ApiKey).where(ApiKey.prefix == key_prefix(key)))
            for row in rows:
                if hmac.compare_digest(row.key_hash, digest):
                    return row
        return None

    async def _register_bootstrap(self, session: AsyncSession) -> None:
        """Insert the bootstrap key once (a revoked one stays revoked); audit the insert."""
        assert self._bootstrap is not None
        key, digest = self._bootstrap
        caller = self._verified.get(digest)
        key_id = uuid.uuid5(_BOOTSTRAP_ID_SPACE, digest)
        statement = (
            upsert(session, ApiKey)
            .values(
                id=key_id,
                key_hash=digest,
                prefix=key_prefix(key),
                name="bootstrap",
                scopes=sorted(caller.caller.scopes if caller else BOOTSTRAP_SCOPES),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["key_hash"])
        )
        inserted = (await session.execute(statement)).rowcount == 1  # type: ignore[attr-defined]
        if inserted:
            await audit.record(
                session,
                actor="bootstrap",
                action=audit.KEY_CREATED,
                target=str(key_id),
                details={"name": "bootstrap", "source": "HAPPYKUBE_BOOTSTRAP_API_KEY"},
            )
            log.info("bootstrap_key_registered", key_id=str(key_id))
        self._bootstrap = None

    def _touch_later(self, database: Database, key_id: str, now: float) -> None:
        """Record `last_used_at` off the request path, at most once a minute per key."""
        if now - self._touched.get(key_id, float("-inf")) < _TOUCH_EVERY_S:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._touch(database, key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _touch(self, database: Database, key_id: str) -> None:
        try:
            async with database.session() as session:
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == uuid.UUID(key_id))
                    .values(last_used_at=utcnow())
                )
        except Exception as exc:  # a lost timestamp must never fail a request
            log.warning("key_touch_failed", key_id=key_id, error=type(exc).__name__)


async def authenticate(request: Request) -> Caller:
    """Check the request's key; set `request.state.caller` (the key id) for the users API."""
    verifier: KeyVerifier = request.app.state.keys
    database: Database | None = getattr(request.app.state, "database", None)
    caller = await verifier.verify(request.headers.get(HEADER), database)
    request.state.caller = caller.key_id
    request.state.api_key = caller
    return caller


def ensure_scope(request: Request, scope: str) -> None:
    """Raise 403 unless the authenticated key holds `scope`."""
    caller: Caller = request.state.api_key
    if not caller.allows(scope):
        raise ForbiddenError(f"this API key lacks the {scope!r} scope", scope=scope)


def require_scope(scope: str) -> Callable[[Request], Awaitable[None]]:
    """Route dependency: a valid key (401) holding `scope` (403) within its rate (429)."""

    async def dependency(request: Request) -> None:
        caller = await authenticate(request)
        ensure_scope(request, scope)
        await limit_key(request, caller.key_id, caller.rate_limit)

    return dependency


async def require_history_access(request: Request) -> None:
    """Dependency of the users API: read scope for GET, write scope otherwise, and the
    per-user rate limit of the user named in the path."""
    scope = HISTORY_READ if request.method in {"GET", "HEAD"} else HISTORY_WRITE
    await require_scope(scope)(request)
    user_id = request.path_params.get("user_id")
    if user_id:
        await limit_user(request, request.state.caller, str(user_id))


async def require_storing(request: Request, user_id: str) -> None:
    """For an analysis that stores its result: the write scope and the user's rate limit."""
    ensure_scope(request, HISTORY_WRITE)
    await limit_user(request, request.state.caller, user_id)
