"""`happykube db rotate-keys`: killed half-way and rerun, nothing is lost or left behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from db import crud
from db.models import EmotionRecord
from db.session import Database
from serve_app.users import store_result
from tests.integration.history_env import (
    cli_env,
    fresh_database,
    key_spec,
    make_secrets,
    run_cli,
    run_killed,
)
from tests.integration.test_users_api import result

ROWS = 500
BATCH = 50


@pytest.fixture(scope="module")
def rotation_url() -> Iterator[str]:
    """A database of its own: rotating moves every row, other tests' rows included."""
    with fresh_database() as url:
        yield url


async def fill(url: str) -> dict[str, str]:
    """ROWS records under k1 spread over 10 users; returns record id -> text."""
    database = Database(url, make_secrets("k1"))
    texts: dict[str, str] = {}
    try:
        for n in range(10):
            for i in range(ROWS // 10):
                text = f"messaggio {n}-{i} àèì 😀"
                record_id = await store_result(
                    database, client="local", user_id=str(n), text=text, result=result()
                )
                texts[str(record_id)] = text
    finally:
        await database.dispose()
    return texts


async def key_counts(url: str) -> dict[str, int]:
    database = Database(url, make_secrets("k1"))
    try:
        async with database.session() as session:
            rows = await session.execute(
                select(EmotionRecord.key_id, func.count()).group_by(EmotionRecord.key_id)
            )
            return {key_id: count for key_id, count in rows}
    finally:
        await database.dispose()


async def test_a_rotation_killed_half_way_and_rerun_loses_nothing(rotation_url: str) -> None:
    texts = await fill(rotation_url)
    assert await key_counts(rotation_url) == {"k1": ROWS}
    env = cli_env(rotation_url, keys=key_spec("k1", "k2"), active="k2")
    args = ["rotate-keys", "--batch-size", str(BATCH)]

    # Killed while re-encrypting the 4th batch: three batches committed, the 4th rolled back.
    killed = run_killed("db.crypto:KeyRing.encrypt", 3 * BATCH + BATCH // 2, args, env)
    assert killed.returncode == -9, killed.stderr
    assert await key_counts(rotation_url) == {"k1": ROWS - 3 * BATCH, "k2": 3 * BATCH}

    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.stderr
    assert f"re-encrypted {ROWS - 3 * BATCH} records" in rerun.stdout
    assert await key_counts(rotation_url) == {"k2": ROWS}

    # Every row reads back under a ring that no longer holds k1 at all.
    only_new = Database(rotation_url, make_secrets("k2"))
    try:
        async with only_new.session() as session:
            records = (await session.scalars(select(EmotionRecord))).all()
            assert len(records) == ROWS
            readback = {str(r.id): crud.open_record(only_new.key_ring, r).text for r in records}
    finally:
        await only_new.dispose()
    assert readback == texts

    again = run_cli(args, env)
    assert again.returncode == 0
    assert "re-encrypted 0 records" in again.stdout


async def test_rotation_stops_on_a_row_it_cannot_read(rotation_url: str) -> None:
    """A ring missing a key still in use fails in one line naming the record and its key
    (exit 2, no traceback) and changes nothing."""
    before = await key_counts(rotation_url)
    env = cli_env(rotation_url, keys=key_spec("k1"), active="k1")
    result = run_cli(["rotate-keys"], env)
    assert result.returncode == 2, result.stderr
    *_progress, line = result.stderr.strip().splitlines()  # the progress bar, then the error
    assert "Traceback" not in result.stderr
    assert line.startswith("error: record ") and "'k2'" in line, result.stderr
    assert await key_counts(rotation_url) == before
