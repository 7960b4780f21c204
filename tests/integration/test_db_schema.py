"""Migrations from empty on PostgreSQL and SQLite, and the zero-configuration quick start."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select

from db import migrations
from db.models import Base, EmotionRecord
from db.session import Database
from db.settings import LOCAL_KEY_FILE, DatabaseSettings, sync_url
from serve_app.users import store_result
from tests.integration.app_env import ServedGraph, history_client
from tests.integration.history_env import ROOT, fresh_database, run_cli
from tests.integration.test_users_api import result

TABLES = {"alembic_version", "users", "emotion_records", "api_keys", "audit_events"}


def schema_drift(url: str) -> list[object]:
    """What Alembic would still change to reach the models (nothing, when in step)."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models_on_postgres(pg_url: str) -> None:
    assert table_names(pg_url) == TABLES
    assert schema_drift(pg_url) == []
    engine = create_engine(sync_url(pg_url))
    try:
        indexes = {
            i["name"]: i["column_names"] for i in inspect(engine).get_indexes("emotion_records")
        }
        foreign_keys = inspect(engine).get_foreign_keys("emotion_records")
    finally:
        engine.dispose()
    assert indexes["ix_emotion_records_user_id_created_at"] == ["user_id", "created_at"]
    assert foreign_keys[0]["options"]["ondelete"] == "CASCADE"


def test_downgrade_to_base_and_back() -> None:
    with fresh_database() as url:
        migrations.downgrade(url, "base")
        assert table_names(url) == {"alembic_version"}
        migrations.upgrade(url)
        assert table_names(url) == TABLES


async def test_quick_start_needs_no_configuration(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    served_graph: ServedGraph,
) -> None:
    """No URL, no secrets: `db upgrade` makes a SQLite file, the first use makes 0600 keys."""
    for name in list(os.environ):  # other tests' sessions (Ray's) may have set some
        if name == "DATABASE_URL" or name.startswith("HAPPYKUBE_"):
            monkeypatch.delenv(name)
    env = dict(os.environ)
    env |= {"PYTHONPATH": str(ROOT), "HAPPYKUBE_DATA_DIR": str(tmp_path)}
    upgraded = run_cli(["upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    url = f"sqlite:///{tmp_path / 'happykube.sqlite3'}"
    assert table_names(url) == TABLES
    assert schema_drift(url) == []

    caplog.set_level(logging.WARNING, logger="db.settings")
    database = Database.from_settings(DatabaseSettings(data_dir=tmp_path))
    key_file = tmp_path / LOCAL_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "generated quick-start encryption keys" in caplog.text
    try:
        async with history_client(served_graph, database) as (http, callers):
            me = callers.clients["me"]
            await store_result(database, client=me, user_id="42", text="ciao", result=result())
            report = (await http.get("/api/v1/users/42/report?days=3")).json()
            assert report["total"] == 1
            assert report["streak_days"] == 1
            exported = (await http.get("/api/v1/users/42/export")).json()
            assert [r["text"] for r in exported["records"]] == ["ciao"]
            assert (await http.delete("/api/v1/users/42")).status_code == 204
        async with database.session() as session:
            # SQLite enforces ON DELETE CASCADE only with foreign keys switched on.
            assert await session.scalar(select(func.count()).select_from(EmotionRecord)) == 0
    finally:
        await database.dispose()
    assert b"ciao" not in (tmp_path / "happykube.sqlite3").read_bytes()
