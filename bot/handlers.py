"""The bot's commands, its message handler and its one error handler.

Handlers let ingress errors propagate: `on_error` is the one place that logs them (with a
request id, never the message text or the Telegram id) and answers the person with the
catalog's friendly text, so every command fails the same way.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import traceback
import uuid
from dataclasses import replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import NetworkError, TelegramError
from telegram.ext import ContextTypes

from bot import reminders
from bot.charts import chart_data, draw, render_png
from bot.client import (
    IngressError,
    IngressRateLimitedError,
    IngressRejectedError,
    IngressUnavailableError,
    IngressUserNotFoundError,
    ingress_of,
)
from bot.state import BotState, Person
from bot.texts import LANGUAGES, Lang, language_of, text
from contract import Report

logger = logging.getLogger(__name__)

REPORT_DAYS = (7, 30)
FORGET_YES, FORGET_NO = "forget:yes", "forget:no"
# Ingress codes the person can act on; each has its own catalog text under `error.`.
_EXPLAINED_CODES = {"empty_text", "text_too_long", "unsupported_language"}


def _who(update: Update, context: ContextTypes.DEFAULT_TYPE) -> tuple[int, Person, Lang]:
    """The sender's id, stored settings and language (chosen, else Telegram's)."""
    user, chat = update.effective_user, update.effective_chat
    assert user is not None and chat is not None  # handlers are registered for private chats
    person = BotState.of(context.bot_data).get(user.id, chat.id)
    return user.id, person, person.language or language_of(user.language_code)


def _timezone(person: Person, lang: Lang) -> str:
    return person.timezone or reminders.DEFAULT_TIMEZONE[lang]


async def _reply(update: Update, message: str) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(message)


async def _sync_settings(context: ContextTypes.DEFAULT_TYPE, user_id: int, **values: str) -> None:
    """Tell the ingress the person's language/timezone; the bot's copy stays authoritative."""
    try:
        await ingress_of(context.bot_data).update_settings(str(user_id), **values)
    except IngressError as err:
        logger.warning("settings sync failed code=%s request_id=%s", err.code, err.request_id)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet the person in their Telegram language."""
    user_id, person, lang = _who(update, context)
    assert update.effective_user is not None
    await _reply(update, text(lang, "start.welcome", name=update.effective_user.first_name))
    await _sync_settings(context, user_id, language=lang, timezone=_timezone(person, lang))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """List the commands."""
    await _reply(update, text(_who(update, context)[2], "help.body"))


async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ask the person how they feel."""
    await _reply(update, text(_who(update, context)[2], "ask.prompt"))


async def analyse(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Classify and store a message; answer with the emotion and a supportive line."""
    user_id, _, lang = _who(update, context)
    assert update.effective_message is not None and update.effective_message.text is not None
    result = await ingress_of(context.bot_data).analyse(
        update.effective_message.text, user_id=str(user_id), language=lang
    )
    emotion = result.emotion.value
    await _reply(
        update,
        text(
            lang,
            "analysis.reply",
            emoji=text(lang, f"emoji.{emotion}"),
            emotion=text(lang, f"emotion.{emotion}"),
            support=text(lang, f"support.{emotion}"),
        ),
    )


def _summary(report: Report, lang: Lang) -> str:
    ranked = sorted(report.emotion_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    emotions = "\n".join(
        text(
            lang,
            "report.emotion_line",
            emoji=text(lang, f"emoji.{name}"),
            emotion=text(lang, f"emotion.{name}"),
            count=count,
        )
        for name, count in ranked
        if count
    )
    sentiments = ", ".join(
        text(lang, "report.sentiment_item", sentiment=text(lang, f"sentiment.{name}"), count=n)
        for name in ("positive", "neutral", "negative")
        if (n := report.sentiment_counts.get(name, 0))
    )
    dominant = report.dominant_emotion or (ranked[0][0] if ranked else "neutral")
    return text(
        lang,
        "report.summary",
        days=report.days,
        total=report.total,
        dominant=f"{text(lang, f'emoji.{dominant}')} {text(lang, f'emotion.{dominant}')}",
        streak=report.streak_days,
        emotions=emotions,
        sentiments=sentiments or "-",
    )


def report_png(report: Report, lang: Lang) -> bytes:
    """The /report chart with the person's language on it."""
    labels = {f"{name}": text(lang, f"emotion.{name}") for name in report.emotion_counts}
    labels |= {
        key: text(lang, f"report.chart_{key}") for key in ("emotions", "sentiment", "messages")
    }
    labels["mood"] = labels.pop("sentiment")
    return render_png(draw(chart_data(report), labels))


async def report(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send a summary and a chart of the last 7 or 30 days."""
    user_id, _, lang = _who(update, context)
    args = context.args or []
    days = int(args[0]) if len(args) == 1 and args[0].isdigit() else 7 if not args else 0
    if days not in REPORT_DAYS:
        await _reply(update, text(lang, "report.usage"))
        return
    try:
        data = await ingress_of(context.bot_data).report(str(user_id), days)
    except IngressUserNotFoundError:
        data = None
    if data is None or data.total == 0:
        await _reply(update, text(lang, "report.empty", days=days))
        return
    await _reply(update, _summary(data, lang))
    # Rendering takes a few hundred ms of CPU: keep it off the event loop.
    png = await asyncio.to_thread(report_png, data, lang)
    assert update.effective_message is not None
    await update.effective_message.reply_photo(
        photo=png, caption=text(lang, "report.caption", days=days)
    )


async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the person's history as a CSV document."""
    user_id, _, lang = _who(update, context)
    try:
        content = await ingress_of(context.bot_data).export_csv(str(user_id))
    except IngressUserNotFoundError:
        content = ""
    rows = max(0, sum(1 for _ in csv.reader(io.StringIO(content))) - 1)
    if rows == 0:
        await _reply(update, text(lang, "export.empty"))
        return
    assert update.effective_message is not None
    await update.effective_message.reply_document(
        document=content.encode("utf-8"),
        filename="happykube-history.csv",
        caption=text(lang, "export.caption", count=rows),
    )


async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ask for confirmation before erasing everything."""
    _, _, lang = _who(update, context)
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(text(lang, "forget.yes"), callback_data=FORGET_YES)],
            [InlineKeyboardButton(text(lang, "forget.no"), callback_data=FORGET_NO)],
        ]
    )
    assert update.effective_message is not None
    await update.effective_message.reply_text(text(lang, "forget.confirm"), reply_markup=keyboard)


async def forget_answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Erase the person's history, settings and reminder once they confirmed."""
    query = update.callback_query
    assert query is not None
    user_id, _, lang = _who(update, context)
    await query.answer()
    if query.data != FORGET_YES:
        await query.edit_message_text(text(lang, "forget.kept"))
        return
    # The ingress first: if it is down, the local settings stay and the person can retry.
    await ingress_of(context.bot_data).forget(str(user_id))
    state = BotState.of(context.bot_data)
    if context.job_queue is not None:
        reminders.cancel(context.job_queue, state, user_id)
    state.forget(user_id)
    await query.edit_message_text(text(lang, "forget.done"))


async def reminder(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Set (HH:MM) or stop (off) the daily check-in."""
    user_id, person, lang = _who(update, context)
    args = context.args or []
    state = BotState.of(context.bot_data)
    assert context.job_queue is not None
    if args == ["off"]:
        reminders.cancel(context.job_queue, state, user_id)
        if person.reminder:
            state.put(user_id, replace(person, reminder=None))
        await _reply(update, text(lang, "reminder.off" if person.reminder else "reminder.none"))
        return
    at = reminders.parse_time(args[0]) if len(args) == 1 else None
    if at is None:
        await _reply(update, text(lang, "reminder.usage"))
        return
    zone = _timezone(person, lang)
    person = replace(person, language=lang, timezone=zone, reminder=at.strftime("%H:%M"))
    state.put(user_id, person)
    reminders.schedule(context.job_queue, state, user_id, person)
    await _reply(update, text(lang, "reminder.set", time=person.reminder, timezone=zone))


async def timezone(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Set the timezone of the daily check-in."""
    user_id, person, lang = _who(update, context)
    args = context.args or []
    if len(args) != 1:
        await _reply(update, text(lang, "timezone.usage", timezone=_timezone(person, lang)))
        return
    try:
        ZoneInfo(args[0])
    except (ZoneInfoNotFoundError, ValueError):
        await _reply(update, text(lang, "timezone.unknown", timezone=args[0]))
        return
    person = replace(person, timezone=args[0])
    state = BotState.of(context.bot_data)
    state.put(user_id, person)
    if context.job_queue is not None:
        reminders.schedule(context.job_queue, state, user_id, person)
    await _reply(update, text(lang, "timezone.set", timezone=args[0]))
    await _sync_settings(context, user_id, timezone=args[0])


async def language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Switch the language the bot talks in."""
    user_id, person, lang = _who(update, context)
    args = context.args or []
    chosen = next((code for code in LANGUAGES if args == [code]), None)
    if chosen is None:
        await _reply(update, text(lang, "language.usage"))
        return
    BotState.of(context.bot_data).put(user_id, replace(person, language=chosen))
    await _reply(update, text(chosen, "language.set"))
    await _sync_settings(context, user_id, language=chosen)


def _error_key(error: BaseException | None) -> str:
    if isinstance(error, IngressRejectedError) and error.code in _EXPLAINED_CODES:
        return f"error.{error.code}"
    if isinstance(error, IngressRateLimitedError):
        return "error.rate_limited"
    if isinstance(error, IngressUnavailableError):
        return "error.unavailable"
    return "error.generic"


def _what(update: object) -> str:
    """Which handler failed, for the log: a command name, never the message text."""
    if not isinstance(update, Update):
        # No update: a JobQueue job or the polling loop itself.
        return "background" if update is None else type(update).__name__
    if update.callback_query is not None:
        return "callback"
    message = update.effective_message
    if message is not None and message.text and message.text.startswith("/"):
        return message.text.split(maxsplit=1)[0].split("@")[0]
    return "message"


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure with a request id and tell the person to try again."""
    error = context.error
    handler = _what(update)
    if isinstance(error, IngressError):
        logger.warning(
            "ingress call failed handler=%s error=%s code=%s status=%s request_id=%s",
            handler,
            type(error).__name__,
            error.code,
            error.status,
            error.request_id,
        )
    elif isinstance(error, NetworkError):
        # Telegram unreachable or slow: PTB retries polling by itself, no traceback needed.
        logger.warning(
            "telegram call failed handler=%s error=%s request_id=%s",
            handler,
            type(error).__name__,
            uuid.uuid4().hex,
        )
    else:
        # Only the frames: an exception's message may quote what the person wrote.
        frames = "".join(traceback.format_tb(error.__traceback__)) if error else ""
        logger.error(
            "handler failed handler=%s error=%s request_id=%s\n%s",
            handler,
            type(error).__name__,
            uuid.uuid4().hex,
            frames,
        )
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    lang = _who(update, context)[2] if update.effective_user else language_of(None)
    try:
        await context.bot.send_message(update.effective_chat.id, text(lang, _error_key(error)))
    except TelegramError as err:
        logger.warning("could not send the error reply error=%s", type(err).__name__)
