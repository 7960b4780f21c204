"""Alembic migrations of the history schema, configured in code so they run from any cwd.

`happykube db upgrade` is the usual entry; `alembic_config(url)` serves tests and tooling.
Migrations use the sync driver of the configured database (psycopg or sqlite3).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from db.settings import sync_url

HERE = Path(__file__).parent


def alembic_config(url: str | URL) -> Config:
    """An Alembic config for `url`; the URL travels in `attributes`, untouched by ini parsing."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["url"] = sync_url(url)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (an empty database included)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
