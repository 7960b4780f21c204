"""Alembic migrations of the history schema, configured in code so they run from any cwd.

`happykube db upgrade` is the usual entry; `alembic_config(url)` serves tests and tooling.
Migrations use the sync driver of the configured database (psycopg or sqlite3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from db.settings import sync_url

HERE = Path(__file__).parent


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


def upgrade(url: str | URL, revision: str = "head", *, pepper: PepperSource | None = None) -> None:
    """Bring the database at `url` to `revision` (an empty database included).

    Raises `MigrationRefusedError` when a revision needs the user pepper for existing users
    and `pepper` gives none.
    """
    command.upgrade(alembic_config(url, pepper=pepper), revision)


def downgrade(url: str | URL, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
