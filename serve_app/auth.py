"""Verification of presented API keys: who is calling, and what the key may do.

401 for a missing, unknown or revoked key; 403 for a key without the scope (serve_app/deps.py
runs these checks for each route, then the key's rate limit: 429). Key format, storage and
creation: serve_app/keys.py.

Keys must keep working through a short database outage, because analysis without a
`user_id` does not need it; but a revoked key must stop working within a bound. So:
- a verified key is trusted for `key_cache_s` without asking; then the database is asked, and
  a revocation answers 401 within `key_cache_s` while the database answers;
- while it does not answer, a key it said yes to is trusted until `max(key_cache_s,
  key_grace_s)` after that last yes (the database asked at most once per `key_cache_s`
  meanwhile); past that bound the answer is 503 `storage_unavailable`, never 200.
`HAPPYKUBE_BOOTSTRAP_API_KEY` (quick start) is registered on first use with a fixed id and the
client `bootstrap`, and checked like any other key; it is trusted without asking only where
there is no database at all. Production refuses it (serve_app/production.py).
"""

import asyncio
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
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
    BOOTSTRAP_CLIENT,
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


Admit = Callable[[], Awaitable[None]]


async def _admit_all() -> None:
    """The default `admit` of `KeyVerifier.verify`: nothing is refused before the store."""


@dataclass(frozen=True)
class Caller:
    """An authenticated key: the client it acts for (the owner of the histories it reaches),
    the key itself (the audit trail's actor) and what it may do."""

    key_id: str
    client: str
    name: str
    scopes: frozenset[str]
    rate_limit: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


@dataclass
class _Verified:
    caller: Caller
    verified_at: float  # the key store's last yes (monotonic seconds)
    asked_at: float  # the last time the key store was asked, answered or not


class KeyVerifier:
    """Checks presented keys against the database, remembering recent answers."""

    def __init__(
        self,
        pepper: bytes,
        *,
        cache_s: float = 10.0,
        grace_s: float = 60.0,
        bootstrap_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pepper = pepper
        self.clock = clock
        self.cache_s = cache_s
        self.trust_s = max(cache_s, grace_s)  # the longest a yes is trusted, outage or not
        self._verified: dict[str, _Verified] = {}
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._bootstrap: tuple[str, str] | None = None  # (key, hash) until registered
        self._bootstrap_caller: tuple[str, Caller] | None = None  # (hash, caller)
        if bootstrap_key:
            digest = hash_key(pepper, bootstrap_key)
            caller = Caller(
                key_id=str(uuid.uuid5(_BOOTSTRAP_ID_SPACE, digest)),
                client=BOOTSTRAP_CLIENT,
                name="bootstrap",
                scopes=frozenset(BOOTSTRAP_SCOPES),
            )
            self._bootstrap_caller = (digest, caller)  # trusted as is only with no database
            self._bootstrap = (bootstrap_key, digest)

    def __repr__(self) -> str:
        return f"KeyVerifier(cache_s={self.cache_s}, trust_s={self.trust_s})"

    async def verify(
        self, key: str | None, database: Database | None, *, admit: Admit = _admit_all
    ) -> Caller:
        """The caller behind `key`; raise 401 (bad key) or 503 (key store unreachable).

        `admit` runs before the key store is asked about a key this replica has not verified,
        or verified longer ago than `max(key_cache_s, key_grace_s)`, and before a missing or
        malformed key's 401; it may refuse by raising (a per-address rate limit,
        serve_app/deps.py). A key verified within that window is checked again after
        `key_cache_s` without meeting it: behind an ingress controller every caller shares one
        address, and ten busy keys would otherwise spend its quota on their own re-checks."""
        if not key or len(key) > _MAX_KEY_CHARS:
            await admit()
            raise UnauthorizedError(f"missing {HEADER} header" if not key else "unknown API key")
        digest = hash_key(self.pepper, key)
        if database is None:  # the quick start with no database: the bootstrap key only
            if self._bootstrap_caller is not None and self._bootstrap_caller[0] == digest:
                return self._bootstrap_caller[1]
            await admit()
            raise UnauthorizedError("unknown API key")
        known = self._verified.get(digest)
        now = self.clock()
        if known is not None and now - known.verified_at < self.cache_s:
            return known.caller
        trusted = known is not None and now - known.verified_at < self.trust_s
        if known is not None and trusted and now - known.asked_at < self.cache_s:
            return known.caller  # the store failed within `cache_s`: not asked on every request
        if known is None or not trusted:  # a trusted key's re-check is free
            await admit()
        try:
            row = await asyncio.wait_for(self._lookup(database, key, digest), _DB_TIMEOUT_S)
        except _UNAVAILABLE as exc:
            log.warning("key_store_unavailable", error=type(exc).__name__, trusted=trusted)
            if known is not None and trusted:
                known.asked_at = now
                return known.caller
            raise StorageUnavailableError("the API key store is unavailable") from exc
        if row is None or row.revoked_at is not None:
            self._verified.pop(digest, None)
            raise UnauthorizedError("revoked API key" if row else "unknown API key")
        caller = Caller(str(row.id), row.client, row.name, frozenset(row.scopes), row.rate_limit)
        if len(self._verified) > 10_000:
            self._verified.clear()  # bounded; a cleared entry costs one database lookup
        self._verified[digest] = _Verified(caller, verified_at=now, asked_at=now)
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
        key_id = uuid.uuid5(_BOOTSTRAP_ID_SPACE, digest)
        statement = (
            upsert(session, ApiKey)
            .values(
                id=key_id,
                key_hash=digest,
                prefix=key_prefix(key),
                client=BOOTSTRAP_CLIENT,
                name="bootstrap",
                scopes=sorted(BOOTSTRAP_SCOPES),
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
                details={
                    "client": BOOTSTRAP_CLIENT,
                    "name": "bootstrap",
                    "source": "HAPPYKUBE_BOOTSTRAP_API_KEY",
                },
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
