"""Build the bot: PTB `Application`, handlers, flood-limit aware rate limiter, lifecycle.

Clients and state are opened in `post_init` and closed in `post_shutdown`, never at import
time. A test passes its own `ingress` (the one seam the house style allows faking); the real
client is created otherwise. PTB calls `post_init` only from `run_polling`/`run_webhook`,
so a test driving `initialize()`/`start()` itself must await `app.post_init(app)` too.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import BotCommand
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot import handlers, reminders
from bot.client import INGRESS_BOT_DATA_KEY, Ingress, IngressClient, ingress_of
from bot.settings import BotSettings
from bot.state import BotState
from bot.texts import LANGUAGES, text

logger = logging.getLogger(__name__)

_SETTINGS_KEY = "settings"
_COMMANDS = {
    "start": handlers.start,
    "help": handlers.help_command,
    "ask": handlers.ask,
    "report": handlers.report,
    "export": handlers.export,
    "forget": handlers.forget,
    "reminder": handlers.reminder,
    "timezone": handlers.timezone,
    "language": handlers.language,
}

BotApplication = Application[Any, Any, Any, Any, Any, Any]


def build_application(settings: BotSettings, *, ingress: Ingress | None = None) -> BotApplication:
    """The configured application; `ingress` replaces the HTTP client (tests only)."""
    app: BotApplication = (
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .rate_limiter(AIORateLimiter())
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
        .build()
    )
    app.bot_data[_SETTINGS_KEY] = settings
    if ingress is not None:
        app.bot_data[INGRESS_BOT_DATA_KEY] = ingress
    # The bot is a personal diary: groups would mix several people's messages.
    private = filters.ChatType.PRIVATE
    for name, callback in _COMMANDS.items():
        app.add_handler(CommandHandler(name, callback, filters=private))
    app.add_handler(
        CallbackQueryHandler(
            handlers.forget_answer, pattern=f"^({handlers.FORGET_YES}|{handlers.FORGET_NO})$"
        )
    )
    app.add_handler(MessageHandler(private & filters.TEXT & ~filters.COMMAND, handlers.analyse))
    app.add_error_handler(handlers.on_error)
    return app


async def _post_init(app: BotApplication) -> None:
    settings: BotSettings = app.bot_data[_SETTINGS_KEY]
    if INGRESS_BOT_DATA_KEY not in app.bot_data:
        app.bot_data[INGRESS_BOT_DATA_KEY] = IngressClient(
            settings.happykube_api_url,
            settings.happykube_api_key.get_secret_value(),
            timeout_s=settings.happykube_api_timeout_s,
            attempts=settings.happykube_api_retries,
        )
    key = settings.happykube_bot_state_key.get_secret_value().encode()
    state = BotState(settings.happykube_bot_data_dir, key)
    app.bot_data[BotState.BOT_DATA_KEY] = state
    assert app.job_queue is not None, "install python-telegram-bot[job-queue]"
    count = reminders.reschedule_all(app.job_queue, state)
    logger.info("bot ready reminders=%d", count)
    for lang in LANGUAGES:
        commands = [BotCommand(name, text(lang, f"commands.{name}")) for name in _COMMANDS]
        # English is also the menu for every language without its own.
        await app.bot.set_my_commands(commands, language_code=None if lang == "en" else lang)


async def _post_shutdown(app: BotApplication) -> None:
    if INGRESS_BOT_DATA_KEY in app.bot_data:
        await ingress_of(app.bot_data).aclose()
