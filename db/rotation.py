"""Re-encryption in batches: key rotation, and the sealing of rows written before revision 0004.

Each batch is one transaction (read, re-encrypt, update, commit), so a run killed at any point
leaves every row either as it was or fully rewritten, never half-written; running it again picks
up the rows still to do. Rows are locked `SKIP LOCKED` on PostgreSQL, so two runs at once share
the work instead of fighting over it.

- `rotate_keys`: every sealed record not under the active key is re-encrypted under it.
- `seal_old_rows`: a record of revisions 0001-0002 (text under the v1 associated data, labels in
  clear columns) gets its `sealed` blob (`db.sealed`) under the active key, and its clear
  columns are emptied. `happykube db upgrade` runs it between revisions 0004 and 0005.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Row, Table, TableClause, bindparam, func, select, update

from db.crypto import CryptoError, KeyRing, associated_data
from db.models import EmotionRecord, JSONType
from db.sealed import Contents, seal
from db.session import Database

# The records table as revision 0004 has it: the sealed blob next to the old clear columns.
OLD_ROWS = sa.table(
    "emotion_records",
    sa.column("id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("key_id", sa.String()),
    sa.column("sealed", sa.LargeBinary()),
    sa.column("text_ciphertext", sa.LargeBinary()),
    sa.column("emotion", sa.String()),
    sa.column("emotion_score", sa.Float()),
    sa.column("sentiment", sa.String()),
    sa.column("language", sa.String()),
    sa.column("model", sa.String()),
    sa.column("model_revision", sa.String()),
    sa.column("metadata", JSONType),
)
# Emptied once a row is sealed; revision 0005 drops them.
CLEAR_COLUMNS = tuple(
    c.name for c in OLD_ROWS.c if c.name not in {"id", "user_id", "key_id", "sealed"}
)
_TEXT_V1_CONTEXT = b"happykube/emotion_records.text/v1"


class UnreadableRecordError(CryptoError):
    """A record the configured ring cannot decrypt, named by its id; the batch holding it was
    not committed, the batches before it were."""


async def pending(database: Database) -> int:
    """How many records are not yet under the active key."""
    return await _count(database, EmotionRecord.key_id != database.key_ring.active_id)


async def unsealed(database: Database) -> int:
    """How many records (revision 0004) still wait for their sealed blob."""
    return await _count(database, OLD_ROWS.c.sealed.is_(None))


async def rotate_keys(
    database: Database, *, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
) -> int:
    """Move every record to the active key; return how many this run re-encrypted.

    Raises `UnreadableRecordError` (and commits nothing of that batch) when a row cannot be
    decrypted with the configured ring, e.g. a retired key was dropped too early.
    """
    ring = database.key_ring
    records = cast(Table, EmotionRecord.__table__)

    def rotate(row: Row[Any]) -> dict[str, Any]:
        plain = ring.decrypt(row.sealed, key_id=row.key_id, aad=_aad(row))
        blob, key_id = ring.encrypt(plain, aad=_aad(row))
        return {"sealed": blob, "key_id": key_id}

    return await _rewrite(
        database,
        records,
        records.c.key_id != ring.active_id,
        (records.c.id, records.c.user_id, records.c.key_id, records.c.sealed),
        rotate,
        batch_size=batch_size,
        on_batch=on_batch,
    )


async def seal_old_rows(
    database: Database, *, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
) -> int:
    """Seal every record still in the clear-label form; return how many this run sealed.
    Raises `UnreadableRecordError` as `rotate_keys` does."""
    ring = database.key_ring
    return await _rewrite(
        database,
        OLD_ROWS,
        OLD_ROWS.c.sealed.is_(None),
        tuple(OLD_ROWS.c),
        lambda row: _sealed_row(ring, row),
        batch_size=batch_size,
        on_batch=on_batch,
    )


def _sealed_row(ring: KeyRing, row: Row[Any]) -> dict[str, Any]:
    v1_aad = _TEXT_V1_CONTEXT + b"|" + row.user_id.bytes + row.id.bytes
    contents = Contents(
        text=ring.decrypt(row.text_ciphertext, key_id=row.key_id, aad=v1_aad),
        emotion=row.emotion,
        emotion_score=row.emotion_score,
        sentiment=row.sentiment,
        language=row.language,
        model=row.model,
        model_revision=row.model_revision,
        meta=row.metadata or {},
    )
    blob, key_id = seal(ring, contents, user_id=row.user_id, record_id=row.id)
    return {"sealed": blob, "key_id": key_id} | dict.fromkeys(CLEAR_COLUMNS)


def _aad(row: Row[Any]) -> bytes:
    return associated_data(row.user_id, row.id)


async def _count(database: Database, where: ColumnElement[bool]) -> int:
    async with database.session() as session:
        count: int = await session.scalar(select(func.count()).where(where)) or 0
    return count


async def _rewrite(
    database: Database,
    target: TableClause,
    todo: ColumnElement[bool],
    columns: Sequence[ColumnElement[Any]],
    change: Callable[[Row[Any]], dict[str, Any]],
    *,
    batch_size: int,
    on_batch: Callable[[int], None] | None,
) -> int:
    """Apply `change` to every row matching `todo`, one committed batch at a time."""
    done = 0
    while True:
        async with database.session() as session:
            rows = (
                await session.execute(
                    select(*columns)
                    .where(todo)
                    .order_by(target.c.id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                if await session.scalar(select(func.count()).where(todo)):
                    # Rows still locked by another (or a just-killed) run: wait for them
                    # rather than report work that is not complete.
                    await asyncio.sleep(0.5)
                    continue
                return done
            # Bound as `new_<column>`: SQLAlchemy keeps a column's own name for itself.
            changes = [
                {"row_id": row.id} | {f"new_{k}": v for k, v in _changed(change, row).items()}
                for row in rows
            ]
            names = [name.removeprefix("new_") for name in changes[0] if name != "row_id"]
            await session.execute(
                update(target)
                .where(target.c.id == bindparam("row_id"))
                .values({name: bindparam(f"new_{name}") for name in names}),
                changes,
            )
        done += len(rows)
        if on_batch is not None:
            on_batch(len(rows))


def _changed(change: Callable[[Row[Any]], dict[str, Any]], row: Row[Any]) -> dict[str, Any]:
    try:
        return change(row)
    except CryptoError as exc:
        raise UnreadableRecordError(f"record {row.id} cannot be decrypted: {exc}") from exc
