"""Alembic migrations of the history schema, configured in code so they run from any cwd.

`happykube db upgrade` is the usual entry; `alembic_config(url)` serves tests and tooling.
Migrations use the sync driver of the configured database (psycopg or sqlite3).

Crossing revision 0005 (issue 16) takes a step no schema migration can do: sealing the rows
written before it, which needs the key ring and runs in resumable batches. `upgrade` stops at
0004, calls `seal` when rows wait for it, then goes on (see versions/0004_sealed.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import column, create_engine, func, select, table, text
from sqlalchemy.engine import URL
from sqlalchemy.sql.expression import ColumnClause

from db.settings import sync_url

HERE = Path(__file__).parent
SEALED_COLUMN, CLEAR_DROPPED = "0004", "0005"


# Gives the user pepper (or None) to revisions that rewrite user hashes (0003), asked only
# when there are rows to rewrite, so an empty database migrates without any secret.
PepperSource = Callable[[], bytes | None]


class MigrationRefusedError(RuntimeError):
    """Raised by a revision that cannot run safely on this data (its message says why);
    nothing has changed."""


def alembic_config(url: str | URL, *, pepper: PepperSource | None = None) -> Config:
    """An Alembic config for `url`; the URL and the pepper's source travel in `attributes`,
    untouched by ini parsing."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["url"] = sync_url(url)
    config.attributes["pepper"] = pepper or (lambda: None)
    return config


def upgrade(
    url: str | URL,
    revision: str = "head",
    *,
    pepper: PepperSource | None = None,
    seal: Callable[[], int] | None = None,
) -> int:
    """Bring the database at `url` to `revision` (an empty database included).

    Raises `MigrationRefusedError` when a revision needs the user pepper for existing users
    and `pepper` gives none. Returns how many rows `seal` sealed on the way (0 when none
    waited, or no `seal` was given: then revision 0005 refuses while unsealed rows remain,
    and the database stays at 0004 with those rows as they were).
    """
    config = alembic_config(url, pepper=pepper)
    sealed = 0
    if _crosses(config, revision, CLEAR_DROPPED):
        command.upgrade(config, SEALED_COLUMN)
        if seal is not None and _unsealed(config):
            sealed = seal()
    command.upgrade(config, revision)
    return sealed


def refuse_while(*, sealed: bool, problem: str) -> None:
    """In a revision: stop (rolling it back) while records are sealed (`sealed=True`) or
    unsealed (`sealed=False`); `problem` is formatted with `{count}`, how many."""
    from alembic import op

    blob: ColumnClause[bytes] = column("sealed")
    query = select(func.count()).select_from(table("emotion_records"))
    count = op.get_bind().scalar(query.where(blob.is_not(None) if sealed else blob.is_(None)))
    if count:
        raise MigrationRefusedError(problem.format(count=count))


def downgrade(url: str | URL, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def _crosses(config: Config, target: str, step: str) -> bool:
    """Whether upgrading to `target` applies revision `step` (the database is not past it)."""
    script = ScriptDirectory.from_config(config)
    if step not in {r.revision for r in script.iterate_revisions(target, "base") if r}:
        return False
    engine = create_engine(config.attributes["url"])
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()
    done = {r.revision for r in script.iterate_revisions(current, "base") if r}
    return step not in done


def _unsealed(config: Config) -> int:
    engine = create_engine(config.attributes["url"])
    try:
        with engine.connect() as connection:
            query = text("SELECT count(*) FROM emotion_records WHERE sealed IS NULL")
            count: int = connection.scalar(query) or 0
    finally:
        engine.dispose()
    return count
