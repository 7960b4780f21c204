"""Sealed records, first step: `emotion_records.sealed`, and the clear columns made nullable.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Sealing an old row needs the encryption keys, which a schema migration does not have, and
must be resumable after a kill, which one transaction is not. So the move to sealed records
(issue 16) is three steps, all run by `happykube db upgrade`:

1. this revision adds the nullable `sealed` blob and lets the clear columns be NULL;
2. `db.rotation.seal_old_rows` seals every row in committed batches under the active key and
   empties its clear columns (killed, it resumes where it stopped; needs the key ring);
3. revision 0005 drops the clear columns, and refuses while any row is still unsealed.

Run it with the old app stopped: rows sealed in step 2 have no clear labels left to read.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrations import refuse_while

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns of revision 0001 that were NOT NULL and are emptied once a row is sealed.
REQUIRED = ("text_ciphertext", "emotion", "emotion_score", "model", "metadata")
LOSS = "{count} records are sealed, their clear columns empty: a downgrade would lose them"


def upgrade() -> None:
    # batch_alter_table: SQLite (the quick start) cannot ALTER a column in place otherwise.
    with op.batch_alter_table("emotion_records") as batch:
        batch.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))
        for name in REQUIRED:
            batch.alter_column(name, nullable=True)


def downgrade() -> None:
    refuse_while(sealed=True, problem=LOSS)
    with op.batch_alter_table("emotion_records") as batch:
        for name in REQUIRED:
            batch.alter_column(name, nullable=False)
        batch.drop_column("sealed")
