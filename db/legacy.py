"""Import of the v1 plaintext table into the encrypted schema (`happykube db migrate-v1`).

The v1 table is `emotions(user_id TEXT, date TIMESTAMP, text TEXT, emotion TEXT, score FLOAT,
model_type TEXT)`, without a primary key. Each v1 row gets a record id derived from its
content under the pepper (plus the row's position among identical copies), so:

- a second run computes the same ids, finds them present, and adds nothing;
- a run killed half-way is resumed by running it again: committed batches are skipped;
- the id reveals nothing about the text, since it is keyed like the user hash.

Rows are read in a fixed order (every column) so identical copies sit next to each other and
keep their copy number between runs. v1 timestamps have no zone; `source_timezone` says
which one they were written in (UTC by default).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    DateTime,
    Float,
    Row,
    String,
    Table,
    Text,
    bindparam,
    column,
    func,
    select,
    table,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.types import TypeEngine

from db.crud import upsert
from db.crypto import keyed_uuid
from db.models import EmotionRecord, User
from db.sealed import Contents, seal
from db.session import Database
from db.settings import async_url

V1_TYPES: dict[str, TypeEngine[Any]] = {
    "user_id": String(),
    "date": DateTime(),
    "text": Text(),
    "emotion": String(),
    "score": Float(),
    "model_type": String(),
}
V1_COLUMNS = tuple(V1_TYPES)


@dataclass
class ImportCounts:
    read: int = 0
    written: int = 0
    already_present: int = 0
    invalid: int = 0

    @property
    def skipped(self) -> int:
        return self.already_present + self.invalid


def v1_table(name: str = "emotions", schema: str | None = None) -> Any:
    return table(name, *(column(c, t) for c, t in V1_TYPES.items()), schema=schema)


async def count_v1(source_url: str | URL, *, table_name: str = "emotions") -> int:
    engine = create_async_engine(async_url(source_url))
    try:
        async with engine.connect() as connection:
            count: int = (
                await connection.scalar(select(func.count()).select_from(v1_table(table_name))) or 0
            )
    finally:
        await engine.dispose()
    return count


async def migrate_v1(
    database: Database,
    *,
    source_url: str | URL | None = None,
    table_name: str = "emotions",
    client: str = "local",
    source_timezone: str = "UTC",
    batch_size: int = 2000,
    on_batch: Callable[[ImportCounts], None] | None = None,
) -> ImportCounts:
    """Copy every v1 row into `users` and `emotion_records`; return what was done."""
    zone = ZoneInfo(source_timezone)
    source = create_async_engine(async_url(source_url or database.url))
    counts = ImportCounts()
    users: dict[str, uuid.UUID] = {}
    v1 = v1_table(table_name)
    query = select(*(v1.c[c] for c in V1_COLUMNS)).order_by(*(v1.c[c] for c in V1_COLUMNS))
    try:
        async with source.connect() as connection:
            stream = await connection.stream(query.execution_options(yield_per=batch_size))
            previous: tuple[Any, ...] | None = None
            copy = 0
            async for partition in stream.partitions(batch_size):
                batch: list[tuple[uuid.UUID, Row[Any]]] = []
                for row in partition:
                    key = tuple(row)
                    copy = copy + 1 if key == previous else 0
                    previous = key
                    counts.read += 1
                    if row.user_id is None or row.text is None or row.date is None:
                        counts.invalid += 1
                        continue
                    parts = [str(part) for part in key]
                    record_id = keyed_uuid(database.secrets.pepper, "v1", client, *parts, str(copy))
                    batch.append((record_id, row))
                async with database.session() as session:
                    await _write_batch(session, database, batch, client, zone, users, counts)
                if on_batch is not None:
                    on_batch(counts)
    finally:
        await source.dispose()
    return counts


async def _write_batch(
    session: AsyncSession,
    database: Database,
    batch: Sequence[tuple[uuid.UUID, Row[Any]]],
    client: str,
    zone: ZoneInfo,
    users: dict[str, uuid.UUID],
    counts: ImportCounts,
) -> None:
    """Insert the batch's new users and records in the session's transaction."""
    if not batch:
        return
    records = EmotionRecord.__table__
    present = set(
        await session.scalars(
            select(records.c.id).where(records.c.id.in_([record_id for record_id, _ in batch]))
        )
    )
    first_seen: dict[str, datetime] = {}
    last_seen: dict[str, datetime] = {}
    for _, row in batch:
        when = _aware(row.date, zone)
        external = str(row.user_id)
        first_seen.setdefault(external, when)
        last_seen[external] = max(last_seen.get(external, when), when)
    await _ensure_users(session, database, first_seen, client, users)

    new_rows = []
    for record_id, row in batch:
        if record_id in present:
            counts.already_present += 1
            continue
        user_id = users[str(row.user_id)]
        contents = Contents(
            text=row.text,
            emotion=str(row.emotion or "unknown").strip().lower()[:32],
            emotion_score=float(row.score) if row.score is not None else 0.0,
            sentiment=None,
            language=None,
            model=f"v1:{row.model_type or 'unknown'}"[:128],
            model_revision=None,
            meta={"source": "v1", "v1_model_type": row.model_type},
        )
        blob, key_id = seal(database.key_ring, contents, user_id=user_id, record_id=record_id)
        new_rows.append(
            {
                "id": record_id,
                "user_id": user_id,
                "key_id": key_id,
                "sealed": blob,
                "created_at": _aware(row.date, zone),
            }
        )
    if new_rows:
        inserted = await session.scalars(
            upsert(session, records).on_conflict_do_nothing().returning(records.c.id), new_rows
        )
        written = len(inserted.all())
        counts.written += written
        counts.already_present += len(new_rows) - written  # a concurrent run got there first
    users_table = cast(Table, User.__table__)
    await session.execute(
        update(users_table)
        .where(users_table.c.id == bindparam("uid"), users_table.c.last_seen_at < bindparam("seen"))
        .values(last_seen_at=bindparam("seen")),
        [{"uid": users[external], "seen": when} for external, when in last_seen.items()],
    )


async def _ensure_users(
    session: AsyncSession,
    database: Database,
    first_seen: dict[str, datetime],
    client: str,
    users: dict[str, uuid.UUID],
) -> None:
    """Fill `users` (external id to user id) for the batch, creating the missing users."""
    missing = {
        external: database.user_hash(external, client=client)
        for external in first_seen
        if external not in users
    }
    if not missing:
        return
    await session.execute(
        upsert(session, User).on_conflict_do_nothing(),
        [
            {
                "id": uuid.uuid4(),
                "client": client,
                "user_hash": hashed,
                "created_at": first_seen[external],
                "last_seen_at": first_seen[external],
                "is_active": True,
                "timezone": "UTC",
            }
            for external, hashed in missing.items()
        ],
    )
    by_hash = {hashed: external for external, hashed in missing.items()}
    found = await session.execute(
        select(User.user_hash, User.id).where(
            User.client == client, User.user_hash.in_(list(by_hash))
        )
    )
    for hashed, user_id in found:
        users[by_hash[hashed]] = user_id


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    return value.replace(tzinfo=zone) if value.tzinfo is None else value
