"""Storage settings, read from the environment only.

`DATABASE_URL`
    SQLAlchemy URL of the history database. `postgresql://...` (asyncpg is used for the API,
    psycopg for migrations) in production. Absent: a SQLite file
    `$HAPPYKUBE_DATA_DIR/happykube.sqlite3` (the quick start).
`HAPPYKUBE_USER_PEPPER`
    Secret of the keyed user hash, at least 32 characters (e.g. `openssl rand -base64 32`).
    Changing it orphans every stored user: their hashes no longer match.
`HAPPYKUBE_ENCRYPTION_KEYS`
    The key ring, `k1:<base64 32 bytes>,k2:<base64 32 bytes>`. Keep retired keys here until
    `happykube db rotate-keys` has moved every row off them.
`HAPPYKUBE_ACTIVE_KEY_ID`
    The key new values are encrypted with; may be left out when the ring holds one key.
`HAPPYKUBE_ENVIRONMENT`
    `local` (default) or `production`. Production refuses to start without a PostgreSQL URL
    and real secrets; local fills missing secrets from `$HAPPYKUBE_DATA_DIR/local-keys.json`,
    generated on first use with 0600 permissions.
`HAPPYKUBE_DATA_DIR`
    Folder of the quick-start files (default `var`, git-ignored).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from db.crypto import KeyRing, KeyRingError, encode_key, generate_key, parse_keys

log = logging.getLogger(__name__)

LOCAL_KEY_FILE = "local-keys.json"
_PLACEHOLDERS = ("changethis", "changeme", "change-me", "placeholder", "example", "secret")


def _looks_like_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(word in lowered for word in _PLACEHOLDERS) or len(set(value)) < 8


class DatabaseSettings(BaseSettings):
    """The storage part of the environment; validation refuses unsafe production setups."""

    # Errors must never echo their input: it holds the pepper and the keys.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        repr=False,  # it may hold the database password
    )
    user_pepper: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("HAPPYKUBE_USER_PEPPER", "user_pepper")
    )
    encryption_keys: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("HAPPYKUBE_ENCRYPTION_KEYS", "encryption_keys"),
    )
    active_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("HAPPYKUBE_ACTIVE_KEY_ID", "active_key_id")
    )
    environment: Literal["local", "production"] = Field(
        default="local", validation_alias=AliasChoices("HAPPYKUBE_ENVIRONMENT", "environment")
    )
    data_dir: Path = Field(
        default=Path("var"), validation_alias=AliasChoices("HAPPYKUBE_DATA_DIR", "data_dir")
    )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value:
            try:
                async_url(value)
            except ArgumentError:  # its message quotes the URL, password included
                raise ValueError("DATABASE_URL: not a database URL") from None
            except ValueError as exc:
                raise ValueError(f"DATABASE_URL: {exc}") from None
        return value

    @model_validator(mode="after")
    def _production_has_real_secrets(self) -> DatabaseSettings:
        if self.environment != "production":
            return self
        problems: list[str] = []
        if not self.database_url or not self.async_url().drivername.startswith("postgresql"):
            problems.append("DATABASE_URL must name a PostgreSQL database")
        pepper = self.user_pepper.get_secret_value() if self.user_pepper else ""
        if len(pepper) < 32 or _looks_like_placeholder(pepper):
            problems.append("HAPPYKUBE_USER_PEPPER must be a random secret of 32+ characters")
        if not self.encryption_keys or _looks_like_placeholder(
            self.encryption_keys.get_secret_value()
        ):
            problems.append("HAPPYKUBE_ENCRYPTION_KEYS must hold real keys")
        else:
            keys = parse_keys(self.encryption_keys.get_secret_value())
            if any(len(set(key)) < 8 for key in keys.values()):
                problems.append("HAPPYKUBE_ENCRYPTION_KEYS holds a key that is not random")
        if problems:
            raise ValueError("refusing to run in production: " + "; ".join(problems))
        return self

    def async_url(self) -> URL:
        """The URL with the async driver the API uses (asyncpg or aiosqlite)."""
        if not self.database_url:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return make_url(f"sqlite+aiosqlite:///{self.data_dir / 'happykube.sqlite3'}")
        return async_url(self.database_url)

    def secrets(self) -> Secrets:
        """The pepper and key ring; in local mode missing ones come from the local key file.

        Raises `SettingsError` naming the variable when the keys do not parse.
        """
        pepper = self.user_pepper.get_secret_value() if self.user_pepper else None
        keys = self.encryption_keys.get_secret_value() if self.encryption_keys else None
        active = self.active_key_id
        if pepper is None or keys is None:
            local = _local_secrets(self.data_dir)
            pepper = pepper or local["user_pepper"]
            if keys is None:
                keys, active = local["encryption_keys"], active or local["active_key_id"]
        try:
            ring = parse_keys(keys)
        except KeyRingError as exc:
            raise SettingsError(f"HAPPYKUBE_ENCRYPTION_KEYS: {exc}") from None
        if active is None:
            if len(ring) != 1:
                raise SettingsError("HAPPYKUBE_ACTIVE_KEY_ID is required when several keys are set")
            active = next(iter(ring))
        try:
            return Secrets(pepper=pepper.encode("utf-8"), key_ring=KeyRing(ring, active))
        except KeyRingError as exc:
            raise SettingsError(f"HAPPYKUBE_ACTIVE_KEY_ID: {exc}") from None


@dataclass(frozen=True)
class Secrets:
    pepper: bytes = field(repr=False)
    key_ring: KeyRing


def load_settings() -> DatabaseSettings:
    """Read the environment; a refusal names the problem and never the values."""
    try:
        return DatabaseSettings()
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SettingsError(reasons) from None


class SettingsError(ValueError):
    """Raised when the storage environment is missing, malformed or unsafe for production."""


def async_url(url: str | URL) -> URL:
    """Map a plain or sync URL to the async driver of the same database."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database {backend!r}: use PostgreSQL or SQLite")


def sync_url(url: str | URL) -> URL:
    """Map a URL to the sync driver of the same database (Alembic, pg tooling)."""
    parsed = make_url(url)
    if parsed.get_backend_name() in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    return parsed.set(drivername="sqlite")


def _local_secrets(data_dir: Path) -> dict[str, str]:
    """Read the quick-start secrets, creating them (0600, never overwritten) on first use."""
    path = data_dir / LOCAL_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        content = {
            "user_pepper": secrets.token_urlsafe(32),
            "encryption_keys": f"local1:{encode_key(generate_key())}",
            "active_key_id": "local1",
        }
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs below
        else:
            with os.fdopen(fd, "w") as handle:
                json.dump(content, handle)
            log.warning(
                "generated quick-start encryption keys in %s (mode 0600); losing this file "
                "makes the stored history unreadable; set HAPPYKUBE_* secrets in production",
                path,
            )
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded
