"""The bot's settings, read from the environment only (secrets never live in files)."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = {"", "changeme", "change-me", "changethis", "secret", "token", "xxx"}


class BotSettings(BaseSettings):
    """Everything `happykube bot` needs; each field is the upper-case environment variable."""

    # Errors must never echo their input: it holds the token and the keys.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    telegram_bot_token: SecretStr = Field(description="The token BotFather gave the bot.")
    telegram_api_base_url: str = Field(
        default="https://api.telegram.org/bot",
        description="Bot API endpoint; the token is appended. Point it at a self-hosted "
        "Bot API server or at the test server.",
    )
    happykube_api_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL of the HappyKube ingress."
    )
    happykube_api_key: SecretStr = Field(description="The bot's own key for the ingress.")
    happykube_bot_data_dir: Path = Field(
        default=Path("var/bot"), description="Where the bot keeps its encrypted state."
    )
    happykube_bot_state_key: SecretStr = Field(
        description="Fernet key that encrypts the bot's state file (chat ids, reminders). "
        "Generate one with `python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'`."
    )
    happykube_api_timeout_s: float = Field(default=10.0, gt=0)
    happykube_api_retries: int = Field(default=3, ge=1, le=10)

    @field_validator("telegram_bot_token", "happykube_api_key", "happykube_bot_state_key")
    @classmethod
    def _no_placeholder(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip().lower() in _PLACEHOLDERS:
            raise ValueError("is empty or a placeholder; set the real secret in the environment")
        return value

    @field_validator("happykube_bot_state_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr) -> SecretStr:
        try:
            Fernet(value.get_secret_value().encode())
        except ValueError:
            raise ValueError("is not a Fernet key (32 url-safe base64-encoded bytes)") from None
        return value

    @field_validator("telegram_api_base_url", "happykube_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class SettingsError(ValueError):
    """Raised when the environment lacks a variable the bot needs or holds a bad value;
    the message names each variable (never its value) on one line."""


def load_settings() -> BotSettings:
    """Read the environment once; a refusal is one `SettingsError` naming every variable."""
    try:
        return BotSettings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, error['loc'])).upper()}: "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors()
        ]
        raise SettingsError("; ".join(problems)) from None
