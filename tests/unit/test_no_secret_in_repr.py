"""No object that holds a secret prints it: not in its `repr`, not in its `str` (issue 16).

Each object is built with known secrets, then its repr and str are searched for every form a
secret could take in print: as text, as Python's bytes repr, as hex and as base64.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.client import IngressClient
from bot.settings import BotSettings
from db.crypto import KeyRing
from db.session import Database
from db.settings import DatabaseSettings, Secrets
from serve_app.auth import KeyVerifier
from serve_app.config import ProtectionSettings

PEPPER = secrets.token_urlsafe(32)
KEY = os.urandom(32)
DB_PASSWORD = "pw-" + secrets.token_hex(12)
REDIS_PASSWORD = "redispw-" + secrets.token_hex(12)
API_KEY = "hk_" + secrets.token_urlsafe(32)
TOKEN = "123456:" + secrets.token_urlsafe(30)
STATE_KEY = Fernet.generate_key().decode()
DB_URL = f"postgresql://app:{DB_PASSWORD}@db.example:5432/happykube"


def forms(secret: str | bytes) -> list[str]:
    raw = secret.encode() if isinstance(secret, str) else secret
    found = [repr(raw)[2:-1], raw.hex(), base64.b64encode(raw).decode()]
    if isinstance(secret, str):
        found.append(secret)
    return found


SECRETS = [PEPPER, KEY, DB_PASSWORD, REDIS_PASSWORD, API_KEY, TOKEN, STATE_KEY]


def key_ring() -> KeyRing:
    return KeyRing({"k1": KEY}, "k1")


def database_settings() -> DatabaseSettings:
    spec = f"k1:{base64.b64encode(KEY).decode()}"
    return DatabaseSettings(
        database_url=DB_URL, user_pepper=PEPPER, encryption_keys=spec, active_key_id="k1"
    )


def protection_settings(monkeypatch: pytest.MonkeyPatch) -> ProtectionSettings:
    monkeypatch.setenv("REDIS_URL", f"redis://:{REDIS_PASSWORD}@cache:6379/0")
    monkeypatch.setenv("HAPPYKUBE_API_KEY_PEPPER", PEPPER)
    monkeypatch.setenv("HAPPYKUBE_BOOTSTRAP_API_KEY", API_KEY)
    return ProtectionSettings()


def bot_settings(monkeypatch: pytest.MonkeyPatch) -> BotSettings:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("HAPPYKUBE_API_KEY", API_KEY)
    monkeypatch.setenv("HAPPYKUBE_BOT_STATE_KEY", STATE_KEY)
    return BotSettings()


BUILDERS: dict[str, Callable[[pytest.MonkeyPatch], object]] = {
    "KeyRing": lambda _: key_ring(),
    "Secrets": lambda _: Secrets(pepper=PEPPER.encode(), key_ring=key_ring()),
    "DatabaseSettings": lambda _: database_settings(),
    "Database": lambda _: Database(DB_URL, Secrets(pepper=PEPPER.encode(), key_ring=key_ring())),
    "ProtectionSettings": protection_settings,
    "KeyVerifier": lambda _: KeyVerifier(PEPPER.encode(), bootstrap_key=API_KEY),
    "BotSettings": bot_settings,
    "IngressClient": lambda _: IngressClient("http://ingress:8000", api_key=API_KEY),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_secret_in_repr_or_str(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # local-mode settings may look for a key file here
    thing = BUILDERS[name](monkeypatch)
    printed = repr(thing) + "\n" + str(thing)
    leaked = [form for secret in SECRETS for form in forms(secret) if form in printed]
    assert not leaked, f"{name} prints a secret: {printed[:300]}"
