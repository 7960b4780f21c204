"""Revision 0003 (clients own histories) on databases made by the previous schema (issue 16).

Each test builds a database at revision 0002, writes rows as revision 0002 stored them (the
tables are spelled out here, not taken from the models), then upgrades: the history must be
reachable through the real API afterwards, and a second run must change nothing.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from db import crud, migrations
from db.crypto import user_hash
from db.models import JSONType
from db.session import Database
from db.settings import sync_url
from serve_app.auth import HEADER
from serve_app.config import ProtectionArgs
from serve_app.keys import EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE, hash_key, key_prefix
from tests.integration.app_env import PEPPER as KEY_PEPPER
from tests.integration.app_env import ServedGraph, client_for, new_key, real_app, shared_link
from tests.integration.history_env import (
    PEPPER,
    cli_env,
    empty_database,
    key_spec,
    make_secrets,
    run_cli,
    run_killed,
    text_v1,
)
from tests.integration.test_clients import revoke
from tests.integration.test_db_schema import schema_drift

SCOPES = [EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE]
TEXT = "scritto prima della revisione 0003"


def table_0002(table: str, /, **types: sa.types.TypeEngine[object]) -> sa.TableClause:
    return sa.table(table, *(sa.column(column, kind) for column, kind in types.items()))


# The three tables as revision 0002 left them (the columns written here).
UUID, STR, WHEN = sa.Uuid(), sa.String(), sa.DateTime(timezone=True)
KEYS = table_0002(
    "api_keys", id=UUID, key_hash=STR, prefix=STR, name=STR, scopes=JSONType, created_at=WHEN
)
USERS = table_0002(
    "users",
    id=UUID,
    owner=STR,
    user_hash=STR,
    created_at=WHEN,
    last_seen_at=WHEN,
    is_active=sa.Boolean(),
    timezone=STR,
)
RECORDS = table_0002(
    "emotion_records",
    id=UUID,
    user_id=UUID,
    text_ciphertext=sa.LargeBinary(),
    key_id=STR,
    emotion=STR,
    emotion_score=sa.Float(),
    model=STR,
    created_at=WHEN,
    metadata=JSONType,
)


@dataclass(frozen=True)
class Seeded:
    key: str  # the API key, as the bot holds it
    key_id: uuid.UUID
    record_id: uuid.UUID


@contextmanager
def engine_of(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(sync_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def seed_0002(url: str, *, extra_users: int = 0) -> Seeded:
    """A key owning user 42 (one record), a `migrate-v1` user 77 owned by `local`, and
    `extra_users` more users of the key, written as revision 0002 did."""
    pepper, now = PEPPER.encode(), datetime.now(UTC)
    key = "hk_" + secrets.token_urlsafe(32)
    key_id, user_id, record_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    user = {"created_at": now, "last_seen_at": now, "is_active": True, "timezone": "UTC"}
    users = [
        {**user, "id": user_id, "owner": str(key_id), "user_hash": user_hash(pepper, "42")},
        {**user, "id": uuid.uuid4(), "owner": "local", "user_hash": user_hash(pepper, "77")},
        *(
            {
                **user,
                "id": uuid.uuid4(),
                "owner": str(key_id),
                "user_hash": user_hash(pepper, f"9{n}"),
            }
            for n in range(extra_users)
        ),
    ]
    with engine_of(url) as engine, engine.begin() as connection:
        connection.execute(
            KEYS.insert(),
            {
                "id": key_id,
                "key_hash": hash_key(KEY_PEPPER, key),
                "prefix": key_prefix(key),
                "name": "telegram-bot",
                "scopes": SCOPES,
                "created_at": now,
            },
        )
        connection.execute(USERS.insert(), users)
        connection.execute(
            RECORDS.insert(),
            {
                "id": record_id,
                "user_id": user_id,
                "text_ciphertext": text_v1(TEXT, user_id, record_id),
                "key_id": "k1",
                "emotion": "joy",
                "emotion_score": 0.9,
                "model": "it_emotion",
                "created_at": now,
                "metadata": {},
            },
        )
    return Seeded(key, key_id, record_id)


def snapshot(url: str) -> tuple[object, ...]:
    """Every user's (id, client, hash), every key's (id, client), and the revision."""
    with engine_of(url) as engine, engine.connect() as connection:
        users = connection.execute(sa.text("SELECT id, client, user_hash FROM users ORDER BY id"))
        keys = connection.execute(sa.text("SELECT id, client FROM api_keys ORDER BY id"))
        version = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
        return tuple(users.all()), tuple(keys.all()), version


def revision_of(url: str) -> str:
    with engine_of(url) as engine, engine.connect() as connection:
        return str(connection.scalar(sa.text("SELECT version_num FROM alembic_version")))


def hashes_0002(url: str) -> list[tuple[object, ...]]:
    with engine_of(url) as engine, engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, owner, user_hash FROM users ORDER BY id"))
        return [tuple(row) for row in rows]


def the_pepper() -> bytes:
    return PEPPER.encode()


def cli(url: str) -> dict[str, str]:
    return cli_env(url, keys=key_spec("k1"), active="k1")


async def test_key_owned_histories_move_to_clients_and_survive_rotation(
    served_graph: ServedGraph,
) -> None:
    """`happykube db upgrade` on a 0002 database: the key's history is reachable with the
    same key, then with a new key of the same client once the first is revoked; running the
    upgrade again (also after `stamp 0002`) changes nothing."""
    with empty_database() as url:
        migrations.upgrade(url, "0002")
        seeded = seed_0002(url)
        upgraded = run_cli(["upgrade"], cli(url))
        assert upgraded.returncode == 0, upgraded.stderr
        after = snapshot(url)
        users, keys, version = after
        assert str(version) >= "0003"
        assert schema_drift(url) == []
        assert keys == ((seeded.key_id, str(seeded.key_id)),)  # its own id is its client
        assert sorted(client for _, client, _ in users) == sorted([str(seeded.key_id), "local"])

        database = Database(url, make_secrets())
        try:
            async with database.session() as session:
                local = await crud.find_user(
                    session, client="local", user_hash=database.user_hash("77", client="local")
                )
            assert local is not None
            args = ProtectionArgs(key_cache_s=0.0)
            async with (
                shared_link() as link,
                client_for(real_app(served_graph, database, link, args)) as http,
            ):
                old = {HEADER: seeded.key}
                report = await http.get("/api/v1/users/42/report", headers=old)
                assert report.status_code == 200 and report.json()["total"] == 1, report.text
                rotated, _ = await new_key(database, *SCOPES, client=str(seeded.key_id))
                await revoke(database, str(seeded.key_id))
                assert (await http.get("/api/v1/users/42/report", headers=old)).status_code == 401
                exported = await http.get("/api/v1/users/42/export", headers={HEADER: rotated})
                assert exported.status_code == 200, exported.text
                records = exported.json()["records"]
                assert [(r["id"], r["text"]) for r in records] == [(str(seeded.record_id), TEXT)]
        finally:
            await database.dispose()

        assert run_cli(["upgrade"], cli(url)).returncode == 0
        assert snapshot(url)[0] == after[0]
        command.stamp(migrations.alembic_config(url), "0002")
        migrations.upgrade(url, "0003")  # no pepper needed: the hashes were rewritten already
        assert snapshot(url)[0] == after[0]


def test_no_pepper_refuses_in_one_line_and_changes_nothing(tmp_path: Path) -> None:
    with empty_database() as url:
        migrations.upgrade(url, "0002")
        seed_0002(url)
        before = hashes_0002(url)
        with pytest.raises(migrations.MigrationRefusedError, match="HAPPYKUBE_USER_PEPPER"):
            migrations.upgrade(url)
        env = {**cli(url), "HAPPYKUBE_DATA_DIR": str(tmp_path)}
        del env["HAPPYKUBE_USER_PEPPER"]
        refused = run_cli(["upgrade"], env)
        assert refused.returncode == 2
        assert refused.stderr.strip().count("\n") == 0 and "HAPPYKUBE_USER_PEPPER" in refused.stderr
        assert not list(tmp_path.iterdir()), "no quick-start pepper may be made up for old rows"
        assert revision_of(url) == "0002" and hashes_0002(url) == before


def test_killed_half_way_leaves_0002_then_runs_again() -> None:
    """SIGKILL after 1,500 of 2,002 hashes (one batch written): nothing is kept; the next run
    moves everything."""
    with empty_database() as url:
        migrations.upgrade(url, "0002")
        seed_0002(url, extra_users=2000)
        before = hashes_0002(url)
        killed = run_killed("db.crypto:wrap_user_hash", 1500, ["upgrade"], cli(url))
        assert killed.returncode == -9, killed.stderr
        assert revision_of(url) == "0002" and hashes_0002(url) == before
        assert run_cli(["upgrade"], cli(url)).returncode == 0
        users = snapshot(url)[0]
        old = {row[0]: row[2] for row in before}
        assert len(users) == 2002 and all(hashed != old[uid] for uid, _, hashed in users)


def test_downgrade_is_refused_while_users_exist() -> None:
    with empty_database() as url:
        migrations.upgrade(url, "0002")
        seed_0002(url)
        migrations.upgrade(url, "0003", pepper=the_pepper)
        with pytest.raises(migrations.MigrationRefusedError, match="cannot be undone"):
            migrations.downgrade(url, "0002")
        refused = run_cli(["downgrade", "0002"], cli(url))
        assert refused.returncode == 2 and "cannot be undone" in refused.stderr
        assert revision_of(url) != "0002"


async def test_the_quick_start_sqlite_file_moves_too(tmp_path: Path) -> None:
    """SQLite copies `users` to rename its column: the records must survive the copy."""
    url = f"sqlite:///{tmp_path / 'happykube.sqlite3'}"
    migrations.upgrade(url, "0002")
    seeded = seed_0002(url)
    upgraded = run_cli(["upgrade"], cli(url))  # to the head: 0003, then the records sealed
    assert upgraded.returncode == 0, upgraded.stderr
    assert schema_drift(url) == []  # the constraints and the records' foreign key included
    after = snapshot(url)
    command.stamp(migrations.alembic_config(url), "0002")
    migrations.upgrade(url, "0003")
    assert snapshot(url)[0] == after[0]
    database = Database(url, make_secrets())
    try:
        async with database.session() as session:
            client = str(seeded.key_id)
            hashed = database.user_hash("42", client=client)
            user = await crud.find_user(session, client=client, user_hash=hashed)
            assert user is not None
            records = [r async for r in crud.iter_records(session, user_id=user.id)]
            assert [crud.open_record(database.key_ring, r).text for r in records] == [TEXT]
    finally:
        await database.dispose()
