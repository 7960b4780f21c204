"""Proof that no message text or raw Telegram id reaches the database or the logs."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from db import crud
from db.crypto import DecryptionError, KeyRing, UnknownKeyError
from db.models import EmotionRecord
from db.session import Database
from serve_app.users import store_result
from tests.integration.app_env import ServedGraph, history_client
from tests.integration.history_env import make_secrets
from tests.integration.test_users_api import result


def pg_dump(url: str) -> str:
    parsed = make_url(url)
    command = ["pg_dump", "-h", str(parsed.host), "-p", str(parsed.port or 5432)]
    command += ["-U", str(parsed.username), "--inserts", str(parsed.database)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


async def test_neither_the_dump_nor_the_logs_hold_the_text_or_the_telegram_id(
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    served_graph: ServedGraph,
) -> None:
    marker = f"MARKER-{secrets.token_hex(8)}"
    telegram_id = str(5 * 10**9 + secrets.randbelow(10**9))
    caplog.set_level(logging.DEBUG)
    # The most talkative setting: every statement and its parameters, every row.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    database = Database(pg_url, make_secrets())
    try:
        async with history_client(served_graph, database) as (http, callers):
            await store_result(
                database,
                client=callers.clients["me"],
                user_id=telegram_id,
                text=f"oggi {marker} sono felice",
                result=result(),
                metadata={"chat": "private"},
            )
            assert (await http.get(f"/api/v1/users/{telegram_id}/report")).status_code == 200
            exported = await http.get(f"/api/v1/users/{telegram_id}/export")
            assert marker in exported.text  # the owner can still read it back
    finally:
        await database.dispose()

    dump = pg_dump(pg_url)
    stored = database.user_hash(telegram_id, client=callers.clients["me"])
    assert stored in dump, "the dump must hold the stored user"
    assert "emotion_records" in dump
    for secret in (marker, telegram_id):
        assert secret not in dump
        assert secret.encode().hex() not in dump  # nor hidden inside a bytea literal
    # The test's own HTTP client (httpx) logs its request URLs, which carry the id by the
    # API's design: that is a client's log (the bot must keep httpx at WARNING), not ours.
    server_side = [r for r in caplog.records if not r.name.startswith("httpx")]
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in server_side)
    logged += "".join(capfd.readouterr())
    assert "INSERT INTO emotion_records" in logged, "statement logging was captured"
    assert marker not in logged
    assert telegram_id not in logged


async def test_a_wrong_key_a_tampered_value_and_a_moved_value_fail_clearly(
    database: Database,
) -> None:
    first = await store_result(database, client="local", user_id="77", text="uno", result=result())
    second = await store_result(database, client="local", user_id="78", text="due", result=result())

    async with database.session() as session:
        record = await session.get(EmotionRecord, first)
        assert record is not None
    wrong = KeyRing({"k1": os.urandom(32)}, "k1")  # right id, wrong bytes
    with pytest.raises(DecryptionError, match="failed authentication under key 'k1'"):
        crud.open_record(wrong, record)
    with pytest.raises(UnknownKeyError, match="'k1'"):
        crud.open_record(make_secrets("k2").key_ring, record)

    async with database.session() as session:
        stored = await session.scalar(select(EmotionRecord.sealed).where(EmotionRecord.id == first))
        assert stored is not None
        tampered = stored[:-1] + bytes([stored[-1] ^ 1])
        await session.execute(
            update(EmotionRecord).where(EmotionRecord.id == first).values(sealed=tampered)
        )
        # The other user's intact ciphertext copied into this row: valid, but not for this row.
        await session.execute(
            update(EmotionRecord).where(EmotionRecord.id == second).values(sealed=stored)
        )
    async with database.session() as session:
        for record_id in (first, second):
            record = await session.get(EmotionRecord, record_id)
            assert record is not None
            with pytest.raises(DecryptionError, match="failed authentication"):
                crud.open_record(database.key_ring, record)
