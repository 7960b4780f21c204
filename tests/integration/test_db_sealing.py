"""Sealed records (issue 16, items 5 and 6): no mood label in clear, an upgrade that seals
old rows resumably, and a history that stays exportable and erasable with a broken row."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, inspect, select, update

from db import crud
from db.models import EmotionRecord, User
from db.report import build_report
from db.session import Database
from db.settings import sync_url
from serve_app.keys import EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE
from serve_app.registry import MODELS
from serve_app.users import store_result
from tests.integration.app_env import Callers, ServedGraph, history_client, new_key
from tests.integration.history_env import (
    cli_env,
    empty_database,
    key_spec,
    make_secrets,
    run_cli,
    run_killed,
    text_v1,
)
from tests.integration.test_db_privacy import pg_dump
from tests.integration.test_users_api import new_user_id, result

LABELS = sorted({label for model in MODELS for label in model.labels})
CLEAR_COLUMNS = {"emotion", "emotion_score", "sentiment", "language", "model", "metadata"}


def labels_in_clear(dump: str) -> set[str]:
    """The registry's labels that the dump holds as a word of their own, or as the bytes of a
    quoted JSON string inside a bytea (hex) literal."""
    found = set()
    for label in LABELS:
        if re.search(rf"(?<![\w+/-]){label}(?![\w+/-])", dump):
            found.add(label)
        if f'"{label}"'.encode().hex() in dump:
            found.add(label)
    return found


async def test_the_dump_after_a_full_request_flow_holds_no_label_in_clear(
    pg_url: str, served_graph: ServedGraph
) -> None:
    database = Database(pg_url, make_secrets())
    user_id = new_user_id()
    try:
        async with history_client(served_graph, database) as (http, _):
            client = f"seal-{user_id}"
            key, _ = await new_key(
                database, EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE, client=client
            )
            http.headers["X-API-Key"] = key
            analysed = await http.post(
                "/api/v1/emotion", json={"text": "che bella giornata", "user_id": user_id}
            )
            assert analysed.status_code == 200, analysed.text
            assert analysed.json()["stored"] is True
            for emotion, sentiment in [("joy", "positive"), ("anger", "negative")]:
                await store_result(
                    database,
                    client=client,
                    user_id=user_id,
                    text=f"oggi {emotion}",
                    result=result(emotion, sentiment),
                    metadata={"request_id": f"req-{emotion}"},
                )
            report = (await http.get(f"/api/v1/users/{user_id}/report")).json()
            assert (report["total"], report["unreadable"]) == (3, 0)
            exported = (await http.get(f"/api/v1/users/{user_id}/export")).json()
            assert [r["emotion"] for r in exported["records"]][1:] == ["joy", "anger"]
            assert exported["unreadable"] == []
    finally:
        await database.dispose()

    dump = pg_dump(pg_url)
    assert "emotion_records" in dump
    assert labels_in_clear(dump) == set()
    assert "req-joy" not in dump  # the caller's request id is sealed with the labels
    assert "it_emotion" not in dump  # a model's name would tell the language


# --- the upgrade that seals rows written before revision 0004 --------------------------------

ROWS = 400
BATCH = 40
USERS = 8
EMOTIONS = ("joy", "anger", "sadness", "fear", "neutral")
SENTIMENTS = ("positive", "negative", "neutral")
NOW = datetime.now(UTC).replace(microsecond=0)


def _old_row(i: int, user_ids: list[uuid.UUID]) -> dict[str, object]:
    """A record as revisions 0001-0002 stored it: text under the v1 AAD, labels in clear."""
    record_id, user_id = uuid.uuid4(), user_ids[i % USERS]
    text = f"messaggio {i} àèì 😀"
    return {
        "id": record_id,
        "user_id": user_id,
        "text_ciphertext": text_v1(text, user_id, record_id),
        "key_id": "k1",
        "emotion": EMOTIONS[i % len(EMOTIONS)],
        "emotion_score": (i % 100) / 100,
        "sentiment": SENTIMENTS[i % len(SENTIMENTS)] if i % 7 else None,
        "language": "it" if i % 2 else "en",
        "model": "it_emotion" if i % 2 else "en_emotion",
        "model_revision": "rev-e",
        "created_at": NOW - timedelta(days=i % 20, minutes=i),
        "metadata": f'{{"request_id": "req-{i}"}}',
        "text": text,
    }


@pytest.fixture(scope="module")
def old_database() -> Iterator[tuple[str, dict[uuid.UUID, dict[str, object]]]]:
    with a_database_of_old_rows() as made:
        yield made


@contextmanager
def a_database_of_old_rows() -> Iterator[tuple[str, dict[uuid.UUID, dict[str, object]]]]:
    """A database at revision 0002 holding ROWS records in the old, clear-label form."""
    from db import migrations

    with empty_database() as url:
        migrations.upgrade(url, "0002")
        user_ids = [uuid.uuid4() for _ in range(USERS)]
        rows = {row["id"]: row for row in (_old_row(i, user_ids) for i in range(ROWS))}
        with psycopg.connect(url) as connection:
            for n, user_id in enumerate(user_ids):
                connection.execute(
                    "INSERT INTO users (id, owner, user_hash, timezone) VALUES (%s, 'local', %s,"
                    " 'Europe/Rome')",
                    (user_id, f"hash-{n}"),
                )
            columns = [c for c in next(iter(rows.values())) if c != "text"]
            with connection.cursor().copy(
                f"COPY emotion_records ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for row in rows.values():
                    copy.write_row([row[c] for c in columns])
        yield url, rows


def _reports_from_clear_columns(url: str) -> dict[str, tuple[int, dict[str, int], dict[str, int]]]:
    """What the old report counted per user over 30 days, read from the clear columns."""
    counts: dict[str, tuple[int, Counter[str], Counter[str]]] = {}
    since = datetime.now(UTC) - timedelta(days=28)  # well inside the 30-day window
    with psycopg.connect(url) as connection:
        for user_id, emotion, sentiment in connection.execute(
            "SELECT user_id, emotion, sentiment FROM emotion_records WHERE created_at >= %s",
            (since,),
        ):
            total, emotions, sentiments = counts.setdefault(str(user_id), (0, Counter(), Counter()))
            emotions[emotion] += 1
            if sentiment is not None:
                sentiments[sentiment] += 1
            counts[str(user_id)] = (total + 1, emotions, sentiments)
    return {k: (t, dict(e), dict(s)) for k, (t, e, s) in counts.items()}


async def _reports_after(
    database: Database,
) -> dict[str, tuple[int, dict[str, int], dict[str, int]]]:
    reports = {}
    async with database.session() as session:
        for user in (await session.scalars(select(User))).all():
            report = await build_report(
                session, key_ring=database.key_ring, user=user, external_id="x", days=30
            )
            assert report.unreadable == 0
            reports[str(user.id)] = (report.total, report.emotion_counts, report.sentiment_counts)
    return reports


def _state(url: str) -> tuple[str, set[str], int]:
    """(alembic revision, columns of emotion_records, rows with a sealed blob)."""
    engine = create_engine(sync_url(url))
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("emotion_records")}
    finally:
        engine.dispose()
    with psycopg.connect(url) as connection:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        sealed = (
            connection.execute(
                "SELECT count(*) FROM emotion_records WHERE sealed IS NOT NULL"
            ).fetchone()
            if "sealed" in columns
            else (0,)
        )
    assert revision is not None and sealed is not None
    return revision[0], columns, sealed[0]


async def test_an_upgrade_killed_while_sealing_and_rerun_seals_every_row(
    old_database: tuple[str, dict[uuid.UUID, dict[str, object]]],
) -> None:
    url, rows = old_database
    before = _reports_from_clear_columns(url)
    env = cli_env(url, keys=key_spec("k1", "k2"), active="k2")
    args = ["upgrade", "--batch-size", str(BATCH)]

    # Killed while sealing the 4th batch: 0004 and three batches committed, the 4th not.
    killed = run_killed("db.crypto:KeyRing.encrypt", 3 * BATCH + BATCH // 2, args, env)
    assert killed.returncode == -9, killed.stderr
    revision, columns, sealed = _state(url)
    assert (revision, sealed) == ("0004", 3 * BATCH)
    assert columns >= CLEAR_COLUMNS  # nothing dropped while rows remain unsealed

    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.stderr
    assert f"sealed {ROWS - 3 * BATCH} records" in rerun.stdout
    revision, columns, sealed = _state(url)
    assert sealed == ROWS
    assert not (CLEAR_COLUMNS | {"text_ciphertext"}) & columns

    # Every row opens under a ring without k1, with the labels it had in clear.
    database = Database(url, make_secrets("k2"))
    try:
        async with database.session() as session:
            records = (await session.scalars(select(EmotionRecord))).all()
            assert {r.key_id for r in records} == {"k2"}
            opened = {r.id: crud.open_record(database.key_ring, r) for r in records}
        assert opened.keys() == rows.keys()
        for record_id, contents in opened.items():
            row = rows[record_id]
            assert contents.text == row["text"]
            assert (contents.emotion, contents.sentiment) == (row["emotion"], row["sentiment"])
            assert contents.emotion_score == row["emotion_score"]
            assert (contents.language, contents.model) == (row["language"], row["model"])
            assert contents.meta == json.loads(str(row["metadata"]))
        assert await _reports_after(database) == before
    finally:
        await database.dispose()

    again = run_cli(args, env)
    assert again.returncode == 0, again.stderr
    assert "sealed 0 records" in again.stdout


async def test_an_old_row_that_cannot_be_decrypted_stops_sealing_in_one_line() -> None:
    """A row in the second batch whose text no key opens: `db upgrade` exits 2 with one line
    naming the record (was a traceback), keeps the first batch, and until the key is found the
    history at 0004 answers with the unsealed rows counted as unreadable (was a TypeError)."""
    with a_database_of_old_rows() as (url, rows):
        await _one_unreadable_old_row(url, rows)


async def _one_unreadable_old_row(url: str, rows: dict[uuid.UUID, dict[str, object]]) -> None:
    victim = sorted(rows)[BATCH + 3]  # rows are sealed in id order
    with psycopg.connect(url) as connection:
        connection.execute(
            "UPDATE emotion_records SET text_ciphertext = %s WHERE id = %s",
            (os.urandom(48), victim),
        )
    env = cli_env(url, keys=key_spec("k1"), active="k1")
    refused = run_cli(["upgrade", "--batch-size", str(BATCH)], env)
    assert refused.returncode == 2, refused.stderr
    *_progress, line = refused.stderr.strip().splitlines()  # the progress bar, then the error
    assert line.startswith("error: record ") and str(victim) in line, refused.stderr
    assert "Traceback" not in refused.stderr
    revision, _, sealed = _state(url)
    assert (revision, sealed) == ("0004", BATCH)
    # A key rotation meanwhile refuses in one line too (it would read the unsealed rows).
    rotate = run_cli(["rotate-keys"], cli_env(url, keys=key_spec("k1", "k2"), active="k2"))
    assert rotate.returncode == 2, rotate.stderr
    assert rotate.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "happykube db upgrade" in rotate.stderr and "Traceback" not in rotate.stderr
    assert _state(url)[2] == BATCH

    database = Database(url, make_secrets())
    try:
        async with database.session() as session:
            user = await session.get(User, rows[victim]["user_id"])
            assert user is not None
            report = await build_report(
                session, key_ring=database.key_ring, user=user, external_id="x", days=30
            )
        assert report.unreadable >= 1
    finally:
        await database.dispose()


def test_dropping_the_clear_columns_refuses_while_a_row_is_unsealed() -> None:
    """Revision 0005 alone (no keys, so no sealing) leaves a database with old rows as it was."""
    from db import migrations

    with empty_database() as url:
        migrations.upgrade(url, "0002")
        record = _old_row(0, [uuid.uuid4()] * USERS)
        with psycopg.connect(url) as connection:
            connection.execute(
                "INSERT INTO users (id, owner, user_hash) VALUES (%s, 'local', 'h')",
                (record["user_id"],),
            )
            columns = [c for c in record if c != "text"]
            connection.execute(
                f"INSERT INTO emotion_records ({', '.join(columns)})"
                f" VALUES ({', '.join(['%s'] * len(columns))})",
                [record[c] for c in columns],
            )
        # The kind `happykube db upgrade` reports in one line (exit 2), not a traceback.
        with pytest.raises(migrations.MigrationRefusedError, match="happykube db upgrade"):
            migrations.upgrade(url, pepper=lambda: make_secrets().pepper)
        revision, columns_now, sealed = _state(url)
        assert (revision, sealed) == ("0004", 0)
        assert columns_now >= CLEAR_COLUMNS


# --- a writer who changes a stored record, and the history around a row that cannot be read --


async def _tamper(database: Database, record_id: uuid.UUID, blob: bytes | None = None) -> None:
    """What a database writer can do: flip a bit of the blob, or put another row's there."""
    async with database.session() as session:
        stored = await session.scalar(
            select(EmotionRecord.sealed).where(EmotionRecord.id == record_id)
        )
        assert stored is not None
        new = blob if blob is not None else stored[:20] + bytes([stored[20] ^ 1]) + stored[21:]
        await session.execute(
            update(EmotionRecord).where(EmotionRecord.id == record_id).values(sealed=new)
        )


async def _blob(database: Database, record_id: uuid.UUID) -> bytes:
    async with database.session() as session:
        stored = await session.scalar(
            select(EmotionRecord.sealed).where(EmotionRecord.id == record_id)
        )
    assert stored is not None
    return stored


async def test_a_changed_label_is_detected_and_reported_not_counted(
    database: Database, served_graph: ServedGraph
) -> None:
    """Another row's valid blob (an 'anger') copied over a 'joy', and a flipped bit: both fail
    authentication; the report counts neither and says how many it skipped."""
    user_id = new_user_id()
    async with history_client(served_graph, database) as (http, callers):
        me = await callers.add("me")
        joy, kept, flipped = [
            await store_result(database, client=me, user_id=user_id, text=t, result=result())
            for t in ("uno", "due", "tre")
        ]
        anger = await store_result(
            database, client=me, user_id=user_id, text="quattro", result=result("anger", "negative")
        )
        await _tamper(database, joy, await _blob(database, anger))
        await _tamper(database, flipped)

        report = (await http.get(f"/api/v1/users/{user_id}/report")).json()
        assert report["unreadable"] == 2
        assert (report["total"], report["emotion_counts"]) == (2, {"joy": 1, "anger": 1})
        assert report["sentiment_counts"] == {"positive": 1, "negative": 1}
        assert report["daily"][-1]["total"] == 2
        assert sorted(
            (await http.get(f"/api/v1/users/{user_id}/export")).json()["unreadable"]
        ) == sorted([str(joy), str(flipped)])
        del kept


async def test_export_and_erase_work_around_a_row_that_cannot_be_decrypted(
    database: Database, served_graph: ServedGraph
) -> None:
    user_id = new_user_id()
    async with history_client(served_graph, database) as (http, callers):
        me = await callers.add("me")
        ids = [
            await store_result(database, client=me, user_id=user_id, text=t, result=result())
            for t in ("uno", "due", "tre")
        ]
        await _tamper(database, ids[1])

        exported = await http.get(f"/api/v1/users/{user_id}/export")
        assert exported.status_code == 200, exported.text
        body = exported.json()
        assert [r["text"] for r in body["records"]] == ["uno", "tre"]
        assert body["unreadable"] == [str(ids[1])]

        as_csv = await http.get(f"/api/v1/users/{user_id}/export", params={"format": "csv"})
        assert as_csv.status_code == 200
        assert as_csv.headers["x-unreadable-count"] == "1"
        assert "uno" in as_csv.text and "tre" in as_csv.text

        report = (await http.get(f"/api/v1/users/{user_id}/report")).json()
        assert (report["total"], report["unreadable"]) == (2, 1)

        assert (await http.delete(f"/api/v1/users/{user_id}")).status_code == 204
        async with database.session() as session:
            left = await session.scalar(select(EmotionRecord.id).where(EmotionRecord.id.in_(ids)))
        assert left is None
        assert (await http.get(f"/api/v1/users/{user_id}/export")).status_code == 404


async def test_the_openapi_document_describes_the_unreadable_fields(
    callers: tuple[httpx.AsyncClient, Callers],
) -> None:
    http, _ = callers
    document = (await http.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for name in ("Export", "Report"):
        assert "cannot be decrypted" in schemas[name]["properties"]["unreadable"]["description"]
    export = document["paths"]["/api/v1/users/{user_id}/export"]["get"]
    assert "X-Unreadable-Count" in export["responses"]["200"]["headers"]
