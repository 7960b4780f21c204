"""Plain keyword-only functions over the history tables; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from db.crypto import KeyRing
from db.models import EmotionRecord, User, utcnow
from db.sealed import Contents, seal, unseal


def upsert(session: AsyncSession, target: Any) -> Any:
    """An `INSERT` that knows `ON CONFLICT` on the session's backend (PostgreSQL or SQLite)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(target)


async def find_user(session: AsyncSession, *, client: str, user_hash: str) -> User | None:
    """The client's user with this hash, or None (also when another client has one)."""
    query = select(User).where(User.client == client, User.user_hash == user_hash)
    result: User | None = await session.scalar(query)
    return result


async def touch_user(
    session: AsyncSession, *, client: str, user_hash: str, seen_at: datetime | None = None
) -> User:
    """Create the client's user if new, else mark it seen; safe under concurrent requests."""
    now = seen_at or utcnow()
    statement = (
        upsert(session, User)
        .values(
            id=uuid.uuid4(),
            client=client,
            user_hash=user_hash,
            created_at=now,
            last_seen_at=now,
            is_active=True,
            timezone="UTC",
        )
        .on_conflict_do_update(index_elements=["client", "user_hash"], set_={"last_seen_at": now})
        .returning(User)
    )
    user: User = (
        await session.scalars(statement, execution_options={"populate_existing": True})
    ).one()
    return user


async def add_record(
    session: AsyncSession,
    *,
    key_ring: KeyRing,
    user_id: uuid.UUID,
    contents: Contents,
    created_at: datetime | None = None,
) -> EmotionRecord:
    """Seal `contents` bound to (user, record) and add the record to the session."""
    record_id = uuid.uuid4()
    blob, key_id = seal(key_ring, contents, user_id=user_id, record_id=record_id)
    record = EmotionRecord(
        id=record_id,
        user_id=user_id,
        key_id=key_id,
        sealed=blob,
        created_at=created_at or utcnow(),
    )
    session.add(record)
    await session.flush()
    return record


def open_record(key_ring: KeyRing, record: EmotionRecord) -> Contents:
    """The record's text and labels; raises a `db.crypto.CryptoError` if it cannot be read."""
    return unseal(
        key_ring, record.sealed, key_id=record.key_id, user_id=record.user_id, record_id=record.id
    )


async def iter_records(
    session: AsyncSession, *, user_id: uuid.UUID
) -> AsyncIterator[EmotionRecord]:
    """The user's records, oldest first, fetched in chunks so exports stay flat in memory."""
    query = (
        select(EmotionRecord)
        .where(EmotionRecord.user_id == user_id)
        .order_by(EmotionRecord.created_at, EmotionRecord.id)
        .execution_options(yield_per=500)
    )
    async for record in await session.stream_scalars(query):
        yield record


async def update_user(
    session: AsyncSession, user: User, *, language: str | None, timezone: str | None
) -> User:
    """Set the user's preferences; a None leaves that field as it is."""
    if language is not None:
        user.language = language
    if timezone is not None:
        user.timezone = timezone
    await session.flush()
    return user


async def delete_user(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Erase the user; the foreign key's ON DELETE CASCADE erases every record with it."""
    await session.execute(delete(User).where(User.id == user_id))
