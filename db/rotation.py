"""Key rotation: re-encrypt every record that is not under the active key, batch by batch.

Each batch is one transaction (read, re-encrypt, update, commit), so a rotation killed at
any point leaves every row under either its old key or the active one, never half-written;
running it again picks up the rows still under old keys. Rows are locked `SKIP LOCKED` on
PostgreSQL, so two rotations running at once share the work instead of fighting over it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import func, select, update

from db.crypto import associated_data
from db.models import EmotionRecord
from db.session import Database


async def pending(database: Database) -> int:
    """How many records are not yet under the active key."""
    async with database.session() as session:
        query = select(func.count()).where(EmotionRecord.key_id != database.key_ring.active_id)
        count: int = await session.scalar(query) or 0
    return count


async def rotate_keys(
    database: Database,
    *,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Move every record to the active key; return how many this run re-encrypted.

    Raises `db.crypto.CryptoError` (and commits nothing of that batch) when a row cannot be
    decrypted with the configured ring, e.g. a retired key was dropped too early.
    """
    ring = database.key_ring
    rotated = 0
    while True:
        async with database.session() as session:
            rows = (
                await session.execute(
                    select(
                        EmotionRecord.id,
                        EmotionRecord.user_id,
                        EmotionRecord.text_ciphertext,
                        EmotionRecord.key_id,
                    )
                    .where(EmotionRecord.key_id != ring.active_id)
                    .order_by(EmotionRecord.id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                if await session.scalar(
                    select(func.count()).where(EmotionRecord.key_id != ring.active_id)
                ):
                    # Rows still locked by another (or a just-killed) rotation: wait for
                    # them rather than report a rotation that is not complete.
                    await asyncio.sleep(0.5)
                    continue
                return rotated
            changes = []
            for record_id, user_id, stored, key_id in rows:
                aad = associated_data(user_id, record_id)
                plaintext = ring.decrypt(stored, key_id=key_id, aad=aad)
                ciphertext, active = ring.encrypt(plaintext, aad=aad)
                changes.append({"id": record_id, "text_ciphertext": ciphertext, "key_id": active})
            await session.execute(update(EmotionRecord), changes)
        rotated += len(rows)
        if on_batch is not None:
            on_batch(len(rows))
