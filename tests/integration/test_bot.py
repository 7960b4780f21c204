"""The Telegram bot end to end through python-telegram-bot, over real HTTP.

Each test runs the real application (handlers, JobQueue, AIORateLimiter, long polling)
against the local fake Bot API server, with the in-memory ingress (the allowed seam), or with
the real HTTP client pointed at a closed port where the ingress being down is the point.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.fernet import Fernet
from PIL import Image

from bot import reminders
from bot.application import BotApplication, build_application
from bot.charts import chart_data, draw
from bot.client import Ingress
from bot.handlers import FORGET_NO, FORGET_YES, report_png
from bot.settings import BotSettings
from bot.state import BotState
from bot.texts import text
from tests.conftest import free_port
from tests.fake_ingress import EXPORT_COLUMNS, FakeIngress, Scripted, ScriptedIngressServer
from tests.telegram_server import Call, FakeTelegram, TelegramUser, bot_environment, running

GIULIA = TelegramUser(id=987654321, first_name="Giulia", language_code="it")
JOHN = TelegramUser(id=123456789, first_name="John", language_code="en-GB")
ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Bot:
    telegram: FakeTelegram
    app: BotApplication
    settings: BotSettings

    @property
    def state(self) -> BotState:
        return BotState.of(self.app.bot_data)

    async def say(
        self, user: TelegramUser, message: str, *, expect: str = "sendMessage", count: int = 1
    ) -> list[Call]:
        return await self.telegram.exchange(user, message, expect=expect, count=count)


def bot_settings(telegram: FakeTelegram, data_dir: Path, key: str, api_url: str) -> BotSettings:
    return BotSettings(
        telegram_bot_token=telegram.token,
        telegram_api_base_url=telegram.base_url,
        happykube_api_url=api_url,
        happykube_api_key="bot-test-key-0123456789",
        happykube_bot_data_dir=data_dir,
        happykube_bot_state_key=key,
        happykube_api_timeout_s=1.0,
        happykube_api_retries=2,
    )


@asynccontextmanager
async def bot_running(
    data_dir: Path,
    ingress: Ingress | None,
    *,
    key: str | None = None,
    api_url: str = "http://127.0.0.1:9",
) -> AsyncIterator[Bot]:
    async with FakeTelegram() as telegram:
        settings = bot_settings(telegram, data_dir, key or Fernet.generate_key().decode(), api_url)
        app = build_application(settings, ingress=ingress)
        async with running(app):
            yield Bot(telegram, app, settings)
        assert telegram.unknown == [], "the bot called Bot API methods the server lacks"


async def test_start_greets_in_the_persons_telegram_language(tmp_path: Path) -> None:
    """/start answers in Italian for an Italian client and English otherwise, and tells the
    ingress the language and the default timezone; the command menu exists in both."""
    ingress = FakeIngress()
    async with bot_running(tmp_path, ingress) as bot:
        [italian] = await bot.say(GIULIA, "/start")
        [english] = await bot.say(JOHN, "/start")
        menus = [c for c in bot.telegram.calls if c.method == "setMyCommands"]
    assert italian.params["text"] == text("it", "start.welcome", name="Giulia")
    assert int(italian.params["chat_id"]) == GIULIA.id
    assert english.params["text"] == text("en", "start.welcome", name="John")
    assert ingress.settings[str(GIULIA.id)] == {"language": "it", "timezone": "Europe/Rome"}
    assert ingress.settings[str(JOHN.id)] == {"language": "en", "timezone": "UTC"}
    assert {m.params.get("language_code") for m in menus} == {None, "it"}
    assert ingress.closed, "post_shutdown closes the ingress client"


async def test_help_and_ask_come_from_the_catalogs(tmp_path: Path) -> None:
    """/help and /ask answer with the catalog texts in the person's language."""
    async with bot_running(tmp_path, FakeIngress()) as bot:
        [helped] = await bot.say(GIULIA, "/help")
        [asked] = await bot.say(JOHN, "/ask")
    assert helped.params["text"] == text("it", "help.body")
    assert asked.params["text"] == text("en", "ask.prompt")


async def test_a_message_is_analysed_stored_and_answered(tmp_path: Path) -> None:
    """A text message reaches the ingress with the person's id and language, is stored, and
    the reply names the emotion with its emoji and a supportive line."""
    ingress = FakeIngress()
    async with bot_running(tmp_path, ingress) as bot:
        [reply] = await bot.say(GIULIA, "Oggi sono proprio felice!")
        [rejected] = await bot.say(GIULIA, "   ")
    assert reply.params["text"] == "😊 Ci sento gioia.\n" + text("it", "support.joy")
    [record] = ingress.records[str(GIULIA.id)]
    assert (record.text, record.emotion) == ("Oggi sono proprio felice!", "joy")
    assert rejected.params["text"] == text("it", "error.empty_text")


async def test_language_command_switches_every_later_reply(tmp_path: Path) -> None:
    """/language en makes an Italian client's later replies English; bad input gets usage."""
    ingress = FakeIngress()
    async with bot_running(tmp_path, ingress) as bot:
        [usage] = await bot.say(GIULIA, "/language fr")
        [switched] = await bot.say(GIULIA, "/language en")
        [reply] = await bot.say(GIULIA, "I am so sad today")
    assert usage.params["text"] == text("it", "language.usage")
    assert switched.params["text"] == text("en", "language.set")
    assert reply.params["text"] == "😢 I hear sadness.\n" + text("en", "support.sadness")
    assert ingress.settings[str(GIULIA.id)]["language"] == "en"


async def test_report_sends_a_summary_and_a_chart_drawn_from_the_history(tmp_path: Path) -> None:
    """/report 7 summarises the stored history and sends a PNG chart whose bars are the
    per-day emotion counts and whose image is the one drawn from that report."""
    ingress = FakeIngress()
    uid = str(GIULIA.id)
    now = datetime.now(UTC)
    for emotion in ("joy", "joy", "sadness"):
        ingress.add(uid, "oggi", emotion, now)
    ingress.add(uid, "due giorni fa", "fear", now - timedelta(days=2))
    ingress.add(uid, "troppo vecchio", "anger", now - timedelta(days=10))
    async with bot_running(tmp_path, ingress) as bot:
        since = len(bot.telegram.calls)
        await bot.telegram.send_text(GIULIA, "/report 7")
        [photo] = await bot.telegram.wait_for("sendPhoto", since=since)
        [summary] = await bot.telegram.wait_for("sendMessage", since=since)

    assert "Messaggi: 4" in summary.params["text"]
    assert "😊 gioia: 2" in summary.params["text"]
    assert "rabbia" not in summary.params["text"], "outside the 7-day window"
    assert photo.params["caption"] == text("it", "report.caption", days=7)
    png = photo.files["photo"][1]
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert image.size == (800, 600)

    [report] = ingress.reports
    assert png == report_png(report, "it"), "the chart sent is the one drawn from the report"
    data = chart_data(report)
    assert data.emotions == {
        "fear": [0, 0, 0, 0, 1, 0, 0],
        "joy": [0, 0, 0, 0, 0, 0, 2],
        "sadness": [0, 0, 0, 0, 0, 0, 1],
    }
    assert data.mood[-1] == (2 - 1) / 3 and data.mood[-3] == -1.0
    figure = draw(
        data, {e: e for e in data.emotions} | dict.fromkeys(("emotions", "mood", "messages"), "")
    )
    bars = figure.axes[0].containers
    assert [c.get_label() for c in bars] == ["fear", "joy", "sadness"]
    heights = {c.get_label(): [p.get_height() for p in c.patches] for c in bars}
    assert heights == data.emotions
    # Stacked: sadness sits on top of joy on the last day.
    assert bars[2].patches[-1].get_y() == 2


async def test_report_window_and_empty_history(tmp_path: Path) -> None:
    """/report only takes 7 or 30, and says so when there is nothing stored yet."""
    async with bot_running(tmp_path, FakeIngress()) as bot:
        [usage] = await bot.say(JOHN, "/report 14")
        [empty] = await bot.say(JOHN, "/report 30")
    assert usage.params["text"] == text("en", "report.usage")
    assert empty.params["text"] == text("en", "report.empty", days=30)


async def test_export_sends_the_stored_history_as_csv(tmp_path: Path) -> None:
    """/export sends a CSV document holding exactly the messages the person wrote."""
    ingress = FakeIngress()
    async with bot_running(tmp_path, ingress) as bot:
        [empty] = await bot.say(JOHN, "/export")
        await bot.say(JOHN, "I'm happy, really")
        await bot.say(JOHN, 'I feel "scared", a bit')
        [document] = await bot.say(JOHN, "/export", expect="sendDocument")
    assert empty.params["text"] == text("en", "export.empty")
    filename, content = document.files["document"]
    assert filename == "happykube-history.csv"
    assert document.params["caption"] == text("en", "export.caption", count=2)
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["text"], r["emotion"]) for r in rows] == [
        ("I'm happy, really", "joy"),
        ('I feel "scared", a bit', "fear"),
    ]


async def test_forget_asks_first_then_erases_everything(tmp_path: Path) -> None:
    """/forget shows a yes/no keyboard; "no" keeps everything, "yes" erases the stored
    messages, the settings and the reminder, and leaves no trace in the state file."""
    ingress = FakeIngress()
    uid = str(GIULIA.id)
    async with bot_running(tmp_path, ingress) as bot:
        await bot.say(GIULIA, "Sono triste")
        await bot.say(GIULIA, "/reminder 20:00")
        [question] = await bot.say(GIULIA, "/forget")
        keyboard = question.json("reply_markup")["inline_keyboard"]
        assert [row[0]["callback_data"] for row in keyboard] == [FORGET_YES, FORGET_NO]
        assert question.params["text"] == text("it", "forget.confirm")

        since = len(bot.telegram.calls)
        await bot.telegram.press_button(GIULIA, question, FORGET_NO)
        [kept] = await bot.telegram.wait_for("editMessageText", since=since)
        assert kept.params["text"] == text("it", "forget.kept")
        assert len(ingress.records[uid]) == 1

        since = len(bot.telegram.calls)
        await bot.telegram.press_button(GIULIA, question, FORGET_YES)
        [done] = await bot.telegram.wait_for("editMessageText", since=since)
        await bot.telegram.wait_for("answerCallbackQuery", since=since)
        assert done.params["text"] == text("it", "forget.done")
        assert uid not in ingress.records
        assert GIULIA.id not in bot.state.people()
        assert bot.app.job_queue is not None
        assert not bot.app.job_queue.get_jobs_by_name(reminders.job_name(bot.state, GIULIA.id))
        key = bot.settings.happykube_bot_state_key.get_secret_value().encode()
    plain = Fernet(key).decrypt((tmp_path / "state.enc").read_bytes())
    assert str(GIULIA.id).encode() not in plain


async def test_reminder_fires_in_the_persons_timezone(tmp_path: Path) -> None:
    """/reminder HH:MM schedules a daily job at that time in the person's timezone; when it
    fires the person gets the check-in message; /reminder off removes it."""
    async with bot_running(tmp_path, FakeIngress()) as bot:
        [tz] = await bot.say(JOHN, "/timezone America/New_York")
        [bad_tz] = await bot.say(JOHN, "/timezone Mars/Olympus")
        [bad_time] = await bot.say(JOHN, "/reminder 25:00")
        [set_] = await bot.say(JOHN, "/reminder 21:30")
        assert bot.app.job_queue is not None
        [job] = bot.app.job_queue.get_jobs_by_name(reminders.job_name(bot.state, JOHN.id))
        fires_at = job.next_t
        assert fires_at is not None
        local = fires_at.astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (21, 30)

        # Bring the next run forward so the real scheduler fires it now.
        since = len(bot.telegram.calls)
        job.job.modify(next_run_time=datetime.now(UTC) + timedelta(milliseconds=200))
        [check_in] = await bot.telegram.wait_for("sendMessage", since=since, within=5)
        assert check_in.params["text"] == text("en", "reminder.prompt")
        assert int(check_in.params["chat_id"]) == JOHN.id

        [off] = await bot.say(JOHN, "/reminder off")
        assert not bot.app.job_queue.get_jobs_by_name(reminders.job_name(bot.state, JOHN.id))
    assert tz.params["text"] == text("en", "timezone.set", timezone="America/New_York")
    assert bad_tz.params["text"] == text("en", "timezone.unknown", timezone="Mars/Olympus")
    assert bad_time.params["text"] == text("en", "reminder.usage")
    assert set_.params["text"] == text(
        "en", "reminder.set", time="21:30", timezone="America/New_York"
    )
    assert off.params["text"] == text("en", "reminder.off")


async def test_reminders_survive_a_restart_in_an_encrypted_file(tmp_path: Path) -> None:
    """A reminder set before a restart is scheduled again by `post_init`; the state file
    does not hold the Telegram id in clear and does not open with another key."""
    key = Fernet.generate_key().decode()
    async with bot_running(tmp_path, FakeIngress(), key=key) as bot:
        await bot.say(GIULIA, "/reminder 08:15")
    raw = (tmp_path / "state.enc").read_bytes()
    assert str(GIULIA.id).encode() not in raw

    async with bot_running(tmp_path, FakeIngress(), key=key) as bot:
        assert bot.app.job_queue is not None
        [job] = bot.app.job_queue.get_jobs_by_name(reminders.job_name(bot.state, GIULIA.id))
        assert job.next_t is not None
        local = job.next_t.astimezone(ZoneInfo("Europe/Rome"))
        assert (local.hour, local.minute) == (8, 15)

    try:
        BotState(tmp_path, Fernet.generate_key())
    except Exception as err:
        assert type(err).__name__ == "StateKeyError"
    else:
        raise AssertionError("a wrong key must not open the state file")


async def test_ingress_down_gets_a_friendly_reply_and_no_crash(tmp_path: Path, caplog) -> None:
    """With nothing listening at the ingress URL, messages and commands get the catalog's
    "try again shortly", the bot keeps answering, and the log line carries a request id but
    neither the message text nor the Telegram id."""
    secret = "il mio segreto personale"
    api_url = f"http://127.0.0.1:{free_port()}"
    # INFO is the level `python -m bot` logs at (PTB's DEBUG output dumps whole updates).
    with caplog.at_level(logging.INFO):
        async with bot_running(tmp_path, None, api_url=api_url) as bot:
            [down] = await bot.say(GIULIA, secret)
            [report_down] = await bot.say(GIULIA, "/report")
            [export_down] = await bot.say(JOHN, "/export")
            [still_alive] = await bot.say(GIULIA, "/help")
    assert down.params["text"] == text("it", "error.unavailable")
    assert report_down.params["text"] == text("it", "error.unavailable")
    assert export_down.params["text"] == text("en", "error.unavailable")
    assert still_alive.params["text"] == text("it", "help.body")

    ours = [r for r in caplog.records if r.name.startswith("bot")]
    failures = [r.getMessage() for r in ours if "ingress call failed" in r.getMessage()]
    assert len(failures) == 3
    assert all("request_id=" in line and "code=unreachable" in line for line in failures)
    # httpx logs request URLs (which hold the id) at INFO; `python -m bot` silences it.
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert secret not in logged
    assert str(GIULIA.id) not in logged and str(JOHN.id) not in logged


async def test_a_slow_ingress_gets_the_same_friendly_reply(tmp_path: Path) -> None:
    """An ingress slower than the client's timeout is answered "try again shortly" too,
    and the message is sent to it once only (it may have been stored)."""
    async with ScriptedIngressServer(Scripted(body={}, delay_s=3.0)) as slow:
        async with bot_running(tmp_path, None, api_url=slow.url) as bot:
            [reply] = await bot.say(JOHN, "I'm happy")
        assert len(slow.requests) == 1
    assert reply.params["text"] == text("en", "error.unavailable")


async def test_python_m_bot_runs_from_the_environment(tmp_path: Path) -> None:
    """`python -m bot` reads its settings from the environment, reaches the Bot API at
    TELEGRAM_API_BASE_URL + token, answers, stops on SIGTERM, and its log holds neither the
    token, nor the message text, nor the Telegram id."""
    secret = "oggi mi sento giù"
    async with FakeTelegram() as telegram:
        api_url = f"http://127.0.0.1:{free_port()}"
        env = bot_environment(telegram, api_url, "bot-test-key-0123456789", tmp_path, ROOT)
        log = tmp_path / "bot.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", env=env, stdout=out, stderr=out
            )
        try:
            await telegram.wait_for("setMyCommands", count=2, within=60)
            [welcome] = await telegram.exchange(GIULIA, "/start")
            [down] = await telegram.exchange(GIULIA, secret)
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), 30)
    assert welcome.params["text"] == text("it", "start.welcome", name="Giulia")
    assert down.params["text"] == text("it", "error.unavailable")
    assert returncode == 0
    logged = log.read_text()
    assert "ingress call failed handler=message" in logged
    assert telegram.token not in logged
    assert secret not in logged and str(GIULIA.id) not in logged
