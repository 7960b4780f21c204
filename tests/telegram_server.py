"""A local stand-in for the Telegram Bot API, for driving the real bot over real HTTP.

It serves `POST /bot<token>/<method>` on 127.0.0.1 with a free port, answers the methods
the bot uses with well-formed Bot API objects, records every call (form fields and uploaded
files), and hands queued updates to `getUpdates` long-polling. Point the bot at `base_url`.
Methods it does not implement answer 404, as the real API does, and are recorded in
`unknown`, so a test notices a call nobody expected.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.fernet import Fernet
from telegram.ext import Application

BOT_ID = 4242


@dataclass
class Call:
    """One Bot API request the bot made."""

    method: str
    params: dict[str, str]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def json(self, key: str) -> Any:
        """A parameter PTB sent JSON-encoded (reply_markup, chat_id, ...)."""
        return json.loads(self.params[key])


@dataclass(frozen=True)
class TelegramUser:
    id: int
    first_name: str = "Giulia"
    language_code: str | None = "it"

    def as_api(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.language_code:
            user["language_code"] = self.language_code
        return user


class FakeTelegram:
    """The fake Bot API server; use `async with FakeTelegram() as telegram:`."""

    def __init__(self, token: str = "123456:TEST-TOKEN", port: int = 0) -> None:
        self.token = token
        self.port = port
        self.calls: list[Call] = []
        self.unknown: list[Call] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._methods: dict[str, Callable[[Call], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._true,
            "setMyCommands": self._true,
            "answerCallbackQuery": self._true,
            "sendChatAction": self._true,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_message_text,
        }

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner, url = await start_local_server(app, self.port)
        self.base_url = f"{url}/bot"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    # -- what tests call ---------------------------------------------------------------

    async def send_text(self, user: TelegramUser, text: str) -> None:
        """Queue a private message from `user`, with a bot_command entity for /commands."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
            "from": user.as_api(),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        await self._push({"message": message})

    async def press_button(self, user: TelegramUser, message: Call, data: str) -> None:
        """Queue a callback query: `user` pressed the inline button `data` under `message`."""
        sent = {
            "message_id": int(message.params.get("message_id", 0)) or next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": user.id, "type": "private"},
            "from": self._bot(),
            "text": message.params.get("text", ""),
        }
        query = {
            "id": str(next(self._update_ids)),
            "from": user.as_api(),
            "chat_instance": "test",
            "data": data,
            "message": sent,
        }
        await self._push({"callback_query": query})

    async def exchange(
        self, user: TelegramUser, message: str, *, expect: str = "sendMessage", count: int = 1
    ) -> list[Call]:
        """Send `message` as `user`; return the bot's first `count` `expect` calls after it."""
        since = len(self.calls)
        await self.send_text(user, message)
        return await self.wait_for(expect, count=count, since=since, within=30)

    async def wait_for(
        self, method: str, *, count: int = 1, since: int = 0, within: float = 10.0
    ) -> list[Call]:
        """The first `count` calls of `method` made after the first `since` calls overall."""

        def found() -> list[Call]:
            return [c for c in self.calls[since:] if c.method == method]

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(found()) >= count), within
                )
            except TimeoutError:
                seen = [c.method for c in self.calls[since:]]
                raise AssertionError(f"no {count}x {method} within {within}s; saw {seen}") from None
        return found()[:count]

    # -- the Bot API -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        params: dict[str, str] = {}
        files: dict[str, tuple[str, bytes]] = {}
        for key, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                files[key] = (value.filename, value.file.read())
            else:
                params[key] = str(value)
        call = Call(request.match_info["method"], params, files)
        handler = self._methods.get(call.method)
        if handler is None:
            self.unknown.append(call)
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        if call.method != "getUpdates":
            await self._record(call)
        return web.json_response({"ok": True, "result": await handler(call)})

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _push(self, update: dict[str, Any]) -> None:
        async with self._changed:
            self._updates.append({"update_id": next(self._update_ids), **update})
            self._changed.notify_all()

    def _bot(self) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "HappyKube", "username": "hk_bot"}

    async def _get_me(self, call: Call) -> dict[str, Any]:
        return {**self._bot(), "can_join_groups": False, "supports_inline_queries": False}

    async def _true(self, call: Call) -> bool:
        return True

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        offset = int(call.params.get("offset", 0))
        timeout = float(call.params.get("timeout", 0))
        # Telegram forgets updates below the offset: the bot confirmed them.
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._updates)), timeout)
            except TimeoutError:
                return []
        return list(self._updates)

    def _message(self, call: Call, **content: Any) -> dict[str, Any]:
        chat_id = int(call.params["chat_id"])
        call.params.setdefault("message_id", str(next(self._message_ids)))
        return {
            "message_id": int(call.params["message_id"]),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": self._bot(),
            **content,
        }

    async def _send_message(self, call: Call) -> dict[str, Any]:
        extra = {"reply_markup": call.json("reply_markup")} if "reply_markup" in call.params else {}
        return self._message(call, text=call.params["text"], **extra)

    async def _send_photo(self, call: Call) -> dict[str, Any]:
        photo = {"file_id": "photo-1", "file_unique_id": "p1", "width": 800, "height": 600}
        return self._message(call, photo=[photo], caption=call.params.get("caption", ""))

    async def _send_document(self, call: Call) -> dict[str, Any]:
        name = call.files["document"][0] if "document" in call.files else "file"
        document = {"file_id": "doc-1", "file_unique_id": "d1", "file_name": name}
        return self._message(call, document=document, caption=call.params.get("caption", ""))

    async def _edit_message_text(self, call: Call) -> dict[str, Any]:
        return self._message(call, text=call.params["text"])


@asynccontextmanager
async def running(app: Application[Any, Any, Any, Any, Any, Any]) -> AsyncIterator[None]:
    """Run a PTB application with long polling, as `run_polling` does, inside a test's loop.

    `run_polling` owns the event loop and calls `post_init`/`post_shutdown` itself; this
    replays its steps so the test and the fake server share the loop. Polls with a 1 s
    timeout so stopping never waits long.
    """
    assert app.updater is not None
    await app.initialize()
    if app.post_init:
        await app.post_init(app)
    await app.updater.start_polling(poll_interval=0.0, timeout=1)
    await app.start()
    try:
        yield
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)


def bot_environment(
    telegram: FakeTelegram, api_url: str, api_key: str, data_dir: Path, root: Path
) -> dict[str, str]:
    """The environment of a `python -m bot` process talking to `telegram` and `api_url`."""
    return {
        **os.environ,
        "PYTHONPATH": str(root),
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "HAPPYKUBE_API_URL": api_url,
        "HAPPYKUBE_API_KEY": api_key,
        "HAPPYKUBE_BOT_DATA_DIR": str(data_dir),
        "HAPPYKUBE_BOT_STATE_KEY": Fernet.generate_key().decode(),
    }


async def start_local_server(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on 127.0.0.1 (port 0: a free one); returns the runner and URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def chat(port: int, out_dir: Path) -> None:
    """Talk to a locally running bot from the terminal (see bot/README.md).

    Each line typed is a message from one test user; `!data` presses the inline button with
    callback data `data` under the bot's last keyboard. Photos and documents the bot sends
    are saved under `out_dir` (which must exist).
    """
    user = TelegramUser(id=1001, first_name="Dev", language_code=os.environ.get("LANG", "it")[:2])
    async with FakeTelegram(port=port) as telegram:
        print(f"TELEGRAM_API_BASE_URL={telegram.base_url}\nTELEGRAM_BOT_TOKEN={telegram.token}")
        loop = asyncio.get_running_loop()
        shown, keyboard = 0, None
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            if line.startswith("!") and keyboard is not None:
                await telegram.press_button(user, keyboard, line[1:].strip())
            elif line.strip():
                await telegram.send_text(user, line.strip())
            await asyncio.sleep(3)  # long enough for most answers; the rest show next time
            for call in telegram.calls[shown:]:
                for name, (filename, content) in call.files.items():
                    target = out_dir / f"{len(telegram.calls)}-{filename or name}"
                    target.write_bytes(content)
                    print(f"[{call.method}] saved {target}")
                if "text" in call.params or "caption" in call.params:
                    print(f"[{call.method}] {call.params.get('text', call.params.get('caption'))}")
                if "reply_markup" in call.params:
                    keyboard = call
                    buttons = call.json("reply_markup")["inline_keyboard"]
                    print("  buttons: " + ", ".join(f"!{b[0]['callback_data']}" for b in buttons))
            shown = len(telegram.calls)


if __name__ == "__main__":
    saved = Path("var/bot-chat")
    saved.mkdir(parents=True, exist_ok=True)
    asyncio.run(chat(int(sys.argv[1]) if len(sys.argv) > 1 else 8081, saved))
