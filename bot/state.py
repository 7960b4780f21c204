"""The bot's own state: each person's language, timezone, chat and daily check-in time.

It has to survive restarts so reminders can be re-scheduled in `post_init`, and it holds raw
Telegram ids (a reminder must be sent to a chat), so the file is Fernet-encrypted with a key
from the environment. It is small (one entry per person who changed a setting) and written
whole, atomically, after each change.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from bot.texts import Lang


class StateKeyError(Exception):
    """Raised when the state file exists but cannot be decrypted with the configured key."""


@dataclass(frozen=True)
class Person:
    """One person's settings; `None` means "not chosen, derive it from Telegram"."""

    chat_id: int
    language: Lang | None = None
    timezone: str | None = None
    reminder: str | None = None  # "HH:MM" in `timezone`

    def reminder_time(self) -> time | None:
        return time.fromisoformat(self.reminder) if self.reminder else None


class BotState:
    """People by Telegram user id, persisted encrypted under `data_dir/state.enc`."""

    BOT_DATA_KEY = "state"  # where the application keeps it in `bot_data`

    def __init__(self, data_dir: Path, key: bytes) -> None:
        self._path = data_dir / "state.enc"
        self._fernet = Fernet(key)
        self._hash_key = hashlib.sha256(b"happykube-bot-pseudonym:" + key).digest()
        self._people: dict[int, Person] = {}
        if self._path.exists():
            try:
                raw = self._fernet.decrypt(self._path.read_bytes())
            except InvalidToken:
                raise StateKeyError(f"{self._path} does not decrypt with the given key") from None
            for user_id, entry in json.loads(raw).items():
                self._people[int(user_id)] = Person(**entry)

    @classmethod
    def of(cls, bot_data: Mapping[str, object]) -> BotState:
        """The instance `post_init` put into the application's `bot_data`."""
        state = bot_data[cls.BOT_DATA_KEY]
        assert isinstance(state, cls)
        return state

    def pseudonym(self, user_id: int) -> str:
        """A keyed hash of a Telegram id: stable, safe for job names and logs, not reversible."""
        return hashlib.blake2b(str(user_id).encode(), key=self._hash_key, digest_size=8).hexdigest()

    def get(self, user_id: int, chat_id: int) -> Person:
        """The person's settings, or blank ones (not stored until `put`)."""
        return self._people.get(user_id) or Person(chat_id=chat_id)

    def people(self) -> dict[int, Person]:
        """A snapshot of everyone, for re-scheduling reminders at start-up."""
        return dict(self._people)

    def put(self, user_id: int, person: Person) -> None:
        """Store a person's settings and save the file."""
        self._people[user_id] = person
        self._save()

    def forget(self, user_id: int) -> None:
        """Drop everything about one person and save."""
        if self._people.pop(user_id, None) is not None:
            self._save()

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        plain = json.dumps({str(uid): asdict(p) for uid, p in self._people.items()})
        token = self._fernet.encrypt(plain.encode())
        # Write then rename, so a crash mid-write never leaves a truncated file behind.
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".state-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(token)
        os.replace(tmp, self._path)
