"""`python -m bot` (also `happykube bot`): run the Telegram bot with long polling."""

from __future__ import annotations

import logging
import sys

from bot.application import build_application
from bot.settings import SettingsError, load_settings


def main() -> None:
    """Read the environment, build the bot and poll until SIGINT/SIGTERM."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s", level="INFO")
    # httpx logs each request URL: Telegram's holds the bot token, the ingress's a user id.
    # APScheduler logs job names at INFO; ours are pseudonyms, but keep the log quiet anyway.
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as exc:  # a configuration error is one line, not a traceback
        print(f"happykube bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    build_application(settings).run_polling(allowed_updates=["message", "callback_query"])


if __name__ == "__main__":
    main()
