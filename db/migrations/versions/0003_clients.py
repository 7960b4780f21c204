"""Clients own histories: `api_keys.client`, `users.owner` becomes `users.client`, and the
user hash is keyed by the client.

Before, a user belonged to the API key id that stored it, so rotating a key orphaned every
history. Every key made before this revision gets its own id as its client, so each history
stays with exactly the callers that could read it before: nothing merges, nothing moves. To
rotate such a key, create the new one with `--client <old key id>` (`happykube keys list`
shows it). Users imported by `migrate-v1` (owner `local` by default) keep that owner as
their client.

The stored hash becomes `db.crypto.wrap_user_hash(pepper, client, old_hash)`, which is what
`client_user_hash` computes for new users (the id itself was never stored). That needs the
user pepper: `happykube db upgrade` passes it, and the revision refuses, changing nothing,
when there are users and no pepper.

Idempotent: the rewrite of the hashes and the rename of `users.owner` happen in one
transaction, and the rewrite runs only while `users.owner` exists; each step checks the
schema first, so running it again (say after a `stamp 0002`) changes nothing. SQLite
(the quick start) copies tables for the renames; its connection keeps foreign keys off here,
so dropping the old `users` copy does not cascade to the records.

Downgrade is refused while users exist (their old hashes cannot be recovered); on an empty
history it restores the previous schema.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from db.crypto import wrap_user_hash
from db.migrations import MigrationRefusedError

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def _columns(bind: sa.Connection, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(bind).get_columns(table)}


def _count(bind: sa.Connection, table: str) -> int:
    return int(bind.scalar(sa.select(sa.func.count()).select_from(sa.table(table))) or 0)


def upgrade() -> None:
    bind = op.get_bind()
    if "owner" in _columns(bind, "users"):
        _rewrap_user_hashes(bind)
        with op.batch_alter_table("users") as batch:
            batch.drop_constraint("uq_users_owner_user_hash", type_="unique")
            batch.alter_column(
                "owner",
                new_column_name="client",
                existing_type=sa.String(64),
                existing_nullable=False,
            )
        # A batch of its own: SQLite's batch mode drops a constraint on a column renamed in
        # the same batch.
        with op.batch_alter_table("users") as batch:
            batch.create_unique_constraint("uq_users_client_user_hash", ["client", "user_hash"])
    if "client" not in _columns(bind, "api_keys"):
        with op.batch_alter_table("api_keys") as batch:
            batch.add_column(sa.Column("client", sa.String(64), nullable=True))
        keys = sa.table("api_keys", sa.column("id", sa.Uuid()), sa.column("client", sa.String(64)))
        rows = [
            {"key": key_id, "client": str(key_id)} for key_id in bind.scalars(sa.select(keys.c.id))
        ]
        if rows:
            bind.execute(
                keys.update()
                .where(keys.c.id == sa.bindparam("key"))
                .values(client=sa.bindparam("client")),
                rows,
            )
        with op.batch_alter_table("api_keys") as batch:
            batch.alter_column("client", existing_type=sa.String(64), nullable=False)


def _rewrap_user_hashes(bind: sa.Connection) -> None:
    """Bind every user's hash to its owner (the client from now on), in batches by id."""
    if not _count(bind, "users"):
        return
    pepper = context.config.attributes.get("pepper", lambda: None)()
    if pepper is None:
        raise MigrationRefusedError(
            "revision 0003 rewrites the user hashes and needs HAPPYKUBE_USER_PEPPER "
            "(or the quick-start key file): set it and run `happykube db upgrade` again"
        )
    users = sa.table(
        "users",
        sa.column("id", sa.Uuid()),
        sa.column("owner", sa.String(64)),
        sa.column("user_hash", sa.String(64)),
    )
    query = sa.select(users.c.id, users.c.owner, users.c.user_hash).order_by(users.c.id)
    rewrite = (
        users.update()
        .where(users.c.id == sa.bindparam("user"))
        .values(user_hash=sa.bindparam("hashed"))
    )
    last: Any = None
    while True:
        page = query if last is None else query.where(users.c.id > last)
        rows = bind.execute(page.limit(_BATCH)).all()
        if not rows:
            return
        bind.execute(
            rewrite,
            [
                {"user": row.id, "hashed": wrap_user_hash(pepper, row.owner, row.user_hash)}
                for row in rows
            ],
        )
        last = rows[-1].id


def downgrade() -> None:
    bind = op.get_bind()
    if _count(bind, "users"):
        raise MigrationRefusedError(
            "revision 0003 cannot be undone while users exist: their hashes are keyed by "
            "client and the previous ones cannot be recovered (restore a backup instead)"
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("client")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_client_user_hash", type_="unique")
        batch.alter_column(
            "client", new_column_name="owner", existing_type=sa.String(64), existing_nullable=False
        )
    with op.batch_alter_table("users") as batch:
        batch.create_unique_constraint("uq_users_owner_user_hash", ["owner", "user_hash"])
