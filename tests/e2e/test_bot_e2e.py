"""The bot as a real process (`python -m bot`) against the real ingress (Ray Serve).

Telegram is the local fake Bot API server; everything else is real: the bot's HTTP client,
the Ray Serve graph (the shared `serve_url` fixture) and its storage. The bot's key is the
served app's bootstrap key (tests/conftest.py, `HAPPYKUBE_E2E_API_KEY`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import sys
from pathlib import Path

import httpx

from bot.handlers import FORGET_YES
from bot.texts import text
from serve_app.schemas import Emotion
from tests.telegram_server import FakeTelegram, TelegramUser, bot_environment

ROOT = Path(__file__).resolve().parents[2]
API_KEY = os.environ.get("HAPPYKUBE_E2E_API_KEY", "e2e-bot-key-6f1c0d2b9a")
GIULIA = TelegramUser(id=555000111, first_name="Giulia", language_code="it")


async def stored_rows(api_url: str, user_id: int) -> list[dict[str, str]] | None:
    """The person's history as the ingress exports it; None once the ingress knows nobody."""
    async with httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": API_KEY}) as http:
        response = await http.get(f"/api/v1/users/{user_id}/export", params={"format": "csv"})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_bot_process_against_the_real_ingress(serve_url: str, tmp_path: Path) -> None:
    """A message is analysed and stored by the real graph, /report charts it, /export
    returns it, and after /forget the ingress holds nothing for the person."""
    api_url = serve_url
    message = "Oggi sono felicissima, che bella giornata!"
    async with FakeTelegram() as telegram:
        env = bot_environment(telegram, api_url, API_KEY, tmp_path, ROOT)
        log = tmp_path / "bot.log"
        with log.open("wb") as out:
            bot = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=ROOT, env=env, stdout=out, stderr=out
            )
        try:
            await telegram.wait_for("setMyCommands", count=2, within=60)
            [reply] = await telegram.exchange(GIULIA, message)
            replies = {
                text(
                    "it",
                    "analysis.reply",
                    emoji=text("it", f"emoji.{e}"),
                    emotion=text("it", f"emotion.{e}"),
                    support=text("it", f"support.{e}"),
                )
                for e in Emotion
            }
            assert reply.params["text"] in replies, log.read_text()[-2000:]
            stored = await stored_rows(api_url, GIULIA.id)
            assert stored is not None and [r["text"] for r in stored] == [message]

            [photo] = await telegram.exchange(GIULIA, "/report 7", expect="sendPhoto")
            assert photo.files["photo"][1].startswith(b"\x89PNG\r\n\x1a\n")

            [document] = await telegram.exchange(GIULIA, "/export", expect="sendDocument")
            rows = list(csv.DictReader(io.StringIO(document.files["document"][1].decode())))
            assert [r["text"] for r in rows] == [message]

            [question] = await telegram.exchange(GIULIA, "/forget")
            since = len(telegram.calls)
            await telegram.press_button(GIULIA, question, FORGET_YES)
            [done] = await telegram.wait_for("editMessageText", since=since, within=30)
            assert done.params["text"] == text("it", "forget.done")
            assert await stored_rows(api_url, GIULIA.id) is None

            [empty] = await telegram.exchange(GIULIA, "/export")
            assert empty.params["text"] == text("it", "export.empty")
        finally:
            bot.send_signal(signal.SIGTERM)
            await asyncio.wait_for(bot.wait(), 30)
        logged = log.read_text()
        assert message not in logged and str(GIULIA.id) not in logged
        assert telegram.token not in logged
