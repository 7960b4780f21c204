"""`happykube db migrate-v1` on a generated 100,000-row v1 table in PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import func, select

from db import crud
from db.models import EmotionRecord, User
from db.session import Database
from tests.integration.history_env import (
    cli_env,
    fresh_database,
    key_spec,
    make_secrets,
    run_cli,
    run_killed,
)

ROWS = 100_000
USERS = 2_000
DUPLICATES = 20  # exact copies of other rows: a v1 table has no key to tell them apart
NULL_TEXTS = 10
BASE = datetime(2024, 1, 1, 8, 0)
EMOTIONS = ("joy", "sadness", "anger", "fear", "surprise", "neutral", "Disgust")
SUMMARY = re.compile(
    r"read (\d+), written (\d+), skipped (\d+) \(already imported (\d+), invalid (\d+)\) "
    r"in ([\d.]+)s, (\d+) rows/s"
)


def v1_row(i: int) -> tuple[str, datetime, str | None, str, float, str]:
    text = None if i >= ROWS - DUPLICATES - NULL_TEXTS else f"messaggio {i}, oggi 😀"
    return (
        str(10_000_000 + i % USERS),
        BASE + timedelta(seconds=37 * i),
        text,
        EMOTIONS[i % len(EMOTIONS)],
        (i % 100) / 100,
        "it_emotion" if i % 2 else "en_emotion",
    )


@pytest.fixture(scope="module")
def v1_url() -> Iterator[str]:
    """A migrated database that also holds the v1 `emotions` table, filled with COPY."""
    with fresh_database() as url, psycopg.connect(url) as connection:
        connection.execute(
            "CREATE TABLE emotions (user_id TEXT, date TIMESTAMP, text TEXT, emotion TEXT,"
            " score FLOAT, model_type TEXT)"
        )
        columns = "user_id, date, text, emotion, score, model_type"
        with connection.cursor().copy(f"COPY emotions ({columns}) FROM STDIN") as copy:
            for i in range(ROWS - DUPLICATES):
                copy.write_row(v1_row(i))
            for i in range(DUPLICATES):
                copy.write_row(v1_row(i * 7))
        connection.commit()
        yield url


def summary(output: str) -> dict[str, float]:
    match = SUMMARY.search(output)
    assert match, output
    names = ("read", "written", "skipped", "already", "invalid", "seconds", "rate")
    return dict(zip(names, map(float, match.groups()), strict=True))


async def test_migrate_v1_is_resumable_idempotent_and_keeps_everything(
    v1_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = cli_env(v1_url, keys=key_spec("k1"), active="k1")
    args = ["migrate-v1", "--batch-size", "2000"]
    valid = ROWS - NULL_TEXTS

    # Crash in the third batch: the first two stay, the third is rolled back.
    killed = run_killed("db.crypto:KeyRing.encrypt", 5_000, args, env)
    assert killed.returncode == -9, killed.stderr
    database = Database(v1_url, make_secrets("k1"))
    try:
        async with database.session() as session:
            after_crash = await session.scalar(select(func.count()).select_from(EmotionRecord))
        assert after_crash is not None
        assert 3_900 <= after_crash <= 4_000

        resumed = run_cli(args, env)
        assert resumed.returncode == 0, resumed.stderr
        first = summary(resumed.stdout)
        assert first["read"] == ROWS
        assert first["invalid"] == NULL_TEXTS
        assert first["already"] == after_crash
        assert first["written"] == valid - after_crash
        with capsys.disabled():
            print(
                f"\nmigrate-v1: {int(first['read'])} v1 rows read, {int(first['written'])} "
                f"written in {first['seconds']:.1f}s = {int(first['rate'])} rows/s "
                f"({first['written'] / first['seconds']:.0f} written rows/s)"
            )

        again = run_cli(args, env)
        assert again.returncode == 0, again.stderr
        second = summary(again.stdout)
        assert (second["read"], second["written"], second["skipped"]) == (ROWS, 0, ROWS)

        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(EmotionRecord)) == valid
            assert await session.scalar(select(func.count()).select_from(User)) == USERS
            # One v1 row, checked field by field: user by keyed hash, time, text, labels.
            i = 12_345
            external, when, text, emotion, score, model_type = v1_row(i)
            user = await crud.find_user(
                session, client="local", user_hash=database.user_hash(external, client="local")
            )
            assert user is not None
            record = await session.scalar(
                select(EmotionRecord).where(
                    EmotionRecord.user_id == user.id,
                    EmotionRecord.created_at == when.replace(tzinfo=UTC),
                )
            )
            assert record is not None
            contents = crud.open_record(database.key_ring, record)
            assert contents.text == text
            assert (contents.emotion, contents.emotion_score) == (emotion.lower(), score)
            assert contents.meta == {"source": "v1", "v1_model_type": model_type}
            assert contents.model == f"v1:{model_type}"
            first_seen = BASE + timedelta(seconds=37 * (i % USERS))
            assert user.created_at == first_seen.replace(tzinfo=UTC)
            # Both copies of a duplicated v1 row are kept.
            copies = await session.scalar(
                select(func.count()).where(
                    EmotionRecord.created_at == v1_row(7)[1].replace(tzinfo=UTC)
                )
            )
            assert copies == 2
    finally:
        await database.dispose()


@pytest.mark.parametrize("client", ["a/b", "", "-lead"])
def test_a_client_no_key_could_have_is_refused_in_one_line(client: str) -> None:
    """Users imported under such a client could never be reached: no key can be made for it."""
    with fresh_database() as url:
        refused = run_cli(
            ["migrate-v1", "--client", client], cli_env(url, keys=key_spec("k1"), active="k1")
        )
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().count("\n") == 0 and "--client" in refused.stderr
