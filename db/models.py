"""The history schema: users (by keyed hash), their encrypted emotion records, and API keys.

Nothing here holds a message, a mood or a Telegram id in clear: `users.user_hash` is the keyed
hash from `db.crypto.client_user_hash`, `emotion_records.sealed` is one AES-GCM blob under
`key_id` holding the text and its labels (`db.sealed`).
Alembic revisions in `db/migrations/versions` create exactly this; a test compares the two.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    Uuid,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so that migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL keeps `timestamptz`; SQLite keeps no zone, so values come back naive and are
    marked UTC here instead of leaking naive datetimes into the report arithmetic.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# A client's name (`api_keys.client`, `users.client`), e.g. telegram-bot.
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def parse_client(value: str) -> str:
    """A client name as given, or ValueError saying what one looks like."""
    if not CLIENT_NAME.fullmatch(value):
        raise ValueError(
            "a client is 1-64 characters of A-Za-z0-9_.:- starting with a letter or digit, "
            "e.g. telegram-bot"
        )
    return value


class User(Base):
    """One end user of one client, known only by the keyed hash of their external id.

    The history belongs to the client (`ApiKey.client`), not to the key that stored it, so it
    outlives key rotation (revision 0003). Unique per (client, user_hash), and the hash is
    keyed by the client too: two clients storing the same Telegram id get two unrelated users,
    and neither can see or learn about the other's.
    """

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("client", "user_hash"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client: Mapped[str] = mapped_column(String(64))
    user_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    language: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")

    records: Mapped[list[EmotionRecord]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class EmotionRecord(Base):
    """One analysed message: text and labels sealed together (revision 0004), the time and
    user in clear so that a report finds a user's rows by time without decrypting others'."""

    __tablename__ = "emotion_records"
    __table_args__ = (Index(None, "user_id", "created_at"), Index(None, "key_id"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[str] = mapped_column(String(32))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )

    user: Mapped[User] = relationship(back_populates="records")


class ApiKey(Base):
    """An API key of a client, stored as a hash with a visible prefix (API-protection issue).

    A client (e.g. `telegram-bot`) has any number of keys; rotating one is: create another for
    the same client, switch, revoke the old one. Keys made before revision 0003 got their
    own id as their client, which keeps their histories where they were.
    """

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(100))
    client: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Requests per minute for this key; None: the deployment's default (revision 0002).
    rate_limit: Mapped[int | None] = mapped_column(Integer)


class AuditEvent(Base):
    """Who did what to which object, and when (revision 0002); never a message or a raw id.

    `actor` is an API key id or `cli:<os user>`; `target` an API key id or a user's row id.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "created_at"), Index(None, "action", "created_at"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
