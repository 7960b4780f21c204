"""`Database`: the async engine, its sessions, and the secrets that go with the stored data.

Built once per process (the ingress deployment's constructor, a CLI command), never at
import time. The engine and the secrets travel together because a row cannot be written or
read without both: the user hash needs the pepper, the text needs the key ring.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from db.crypto import KeyRing, client_user_hash
from db.settings import DatabaseSettings, Secrets, async_url, load_settings


class Database:
    """One database and the secrets to read it; `session()` gives a transaction."""

    def __init__(self, url: str | URL, secrets: Secrets, *, pool_size: int = 5) -> None:
        self.url = async_url(url)
        self.secrets = secrets
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            options |= {"pool_size": pool_size, "max_overflow": pool_size}
        self.engine = create_async_engine(self.url, **options)
        if self.url.get_backend_name() == "sqlite":
            # SQLite ignores ON DELETE CASCADE unless each connection asks for it.
            event.listen(self.engine.sync_engine, "connect", _sqlite_foreign_keys)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: DatabaseSettings | None = None) -> Database:
        """Build from the environment (see `db.settings` for the variables)."""
        settings = settings or load_settings()
        return cls(settings.async_url(), settings.secrets())

    @property
    def key_ring(self) -> KeyRing:
        return self.secrets.key_ring

    def user_hash(self, external_id: str, *, client: str) -> str:
        """The keyed hash that stands for `external_id` (e.g. a Telegram id) in `client`'s
        histories: the same person has unrelated hashes in two clients."""
        return client_user_hash(self.secrets.pepper, client, external_id)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
