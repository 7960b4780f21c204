"""Verification of presented API keys: who is calling, and what the key may do.

401 for a missing, unknown or revoked key; 403 for a key without the scope (serve_app/deps.py
runs these checks for each route, then the key's rate limit: 429). Key format, storage and
creation: serve_app/keys.py.

Keys must keep working while the database is down, because analysis without a `user_id`
does not need it. So a verified key is remembered for `key_cache_s` and, when the database
cannot be reached afterwards, trusted past that; a revocation bites within `key_cache_s`.
`HAPPYKUBE_BOOTSTRAP_API_KEY` (quick start) is registered on first use with a fixed id and
is known without the database at all.
"""

import asyncio
import hmac
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.crud import upsert
from db.models import ApiKey, utcnow
from db.session import Database
from serve_app.errors import StorageUnavailableError, UnauthorizedError
from serve_app.keys import (
    ADMIN,
    BOOTSTRAP_SCOPES,
    EMOTION_WRITE,
    HISTORY_READ,
    HISTORY_WRITE,
    SCOPES,
    hash_key,
    key_prefix,
)
from serve_app.observability import get_logger

log = get_logger(__name__)

__all__ = [
    "ADMIN",
    "EMOTION_WRITE",
    "HEADER",
    "HISTORY_READ",
    "HISTORY_WRITE",
    "SCOPES",
    "Caller",
    "KeyVerifier",
    "hash_key",
    "key_prefix",
]

HEADER = "X-API-Key"
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


@dataclass(frozen=True)
class Caller:
    """An authenticated key: who is calling and what it may do."""

    key_id: str
    name: str
    scopes: frozenset[str]
    rate_limit: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


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
            .on_conflict_do_nothing()  # on the id or the hash: another replica won the race
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
