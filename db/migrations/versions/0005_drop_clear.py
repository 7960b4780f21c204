"""Sealed records, last step: drop the clear label columns, once every row is sealed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

See revision 0004 for the three steps; `happykube db upgrade` seals the rows before this one.
Run alone on a database with unsealed rows (no keys given), it refuses and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db.migrations import refuse_while

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
CLEAR: dict[str, sa.types.TypeEngine[Any]] = {
    "text_ciphertext": sa.LargeBinary(),
    "emotion": sa.String(length=32),
    "emotion_score": sa.Float(),
    "sentiment": sa.String(length=32),
    "language": sa.String(length=8),
    "model": sa.String(length=128),
    "model_revision": sa.String(length=64),
    "metadata": _JSON,
}


UNSEALED = (
    "{count} records are not sealed yet: run `happykube db upgrade` with "
    "HAPPYKUBE_ENCRYPTION_KEYS set, which seals them before dropping the clear columns"
)


def upgrade() -> None:
    refuse_while(sealed=False, problem=UNSEALED)
    with op.batch_alter_table("emotion_records") as batch:
        batch.alter_column("sealed", existing_type=sa.LargeBinary(), nullable=False)
        for name in CLEAR:
            batch.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("emotion_records") as batch:
        batch.alter_column("sealed", existing_type=sa.LargeBinary(), nullable=True)
        for name, kind in CLEAR.items():
            batch.add_column(sa.Column(name, kind, nullable=True))
