"""API keys as records: their format, their storage as hashes, and their creation and revocation.

A key is `hk_` plus `secrets.token_urlsafe(32)` (256 random bits), shown once at creation.
The database keeps its first 11 characters (`prefix`, for lookup and for people to tell keys
apart) and HMAC-SHA256 of the whole key under `HAPPYKUBE_API_KEY_PEPPER`: a stolen table is
useless without the pepper, and a key is looked up by prefix, then compared in constant time.

A key belongs to a client (`telegram-bot`): the histories its calls store belong to the
client, so a client rotates keys (create a second, switch, revoke the first) without losing
any. A client name is 1-64 characters of `A-Za-z0-9_.:-`, starting with a letter or digit.

Scopes: `emotion:write` (analyse), `history:read` (report, export), `history:write` (store a
message, settings, erasure); `admin` stands for every scope. The checks of a presented key
live in serve_app/auth.py; the FastAPI dependencies that run them in serve_app/deps.py.
"""

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db import audit
from db.models import ApiKey, parse_client, utcnow

KEY_MARK = "hk_"
PREFIX_CHARS = 11  # "hk_" and 8 random characters: 48 bits, plenty to find a key's row
EMOTION_WRITE = "emotion:write"
HISTORY_READ = "history:read"
HISTORY_WRITE = "history:write"
ADMIN = "admin"
SCOPES = (EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE, ADMIN)
BOOTSTRAP_SCOPES = (EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE)
# The client of `HAPPYKUBE_BOOTSTRAP_API_KEY`: a new bootstrap key keeps the quick start's history.
BOOTSTRAP_CLIENT = "bootstrap"


def generate_key() -> str:
    """A new key: the recognisable mark and 32 random bytes, URL-safe."""
    return KEY_MARK + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str:
    return key[:PREFIX_CHARS]


def hash_key(pepper: bytes, key: str) -> str:
    """The stored form of a key: HMAC-SHA256 under the pepper, hex."""
    return hmac.new(pepper, b"api-key\0" + key.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_scopes(values: Sequence[str]) -> list[str]:
    """Scopes from repeated and/or comma-separated values; unknown ones are refused."""
    scopes = sorted({s.strip() for value in values for s in value.split(",") if s.strip()})
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {sorted(unknown)}")
    return scopes


async def create_key(
    session: AsyncSession,
    *,
    pepper: bytes,
    client: str,
    name: str,
    scopes: Sequence[str],
    actor: str,
    rate_limit: int | None = None,
) -> tuple[str, ApiKey]:
    """Store a new key of `client` and audit it; return the key (its only appearance) and
    its row."""
    key = generate_key()
    row = ApiKey(
        key_hash=hash_key(pepper, key),
        prefix=key_prefix(key),
        client=parse_client(client),
        name=name,
        scopes=parse_scopes(scopes),
        rate_limit=rate_limit,
    )
    session.add(row)
    await session.flush()
    details = {"client": row.client, "name": name, "scopes": row.scopes, "prefix": row.prefix}
    await audit.record(
        session, actor=actor, action=audit.KEY_CREATED, target=str(row.id), details=details
    )
    return key, row


async def list_keys(
    session: AsyncSession, *, include_revoked: bool = True, client: str | None = None
) -> Sequence[ApiKey]:
    """The keys, oldest first: all of them, or only the active ones, or one client's."""
    statement = select(ApiKey).order_by(ApiKey.created_at)
    if not include_revoked:
        statement = statement.where(ApiKey.revoked_at.is_(None))
    if client is not None:
        statement = statement.where(ApiKey.client == client)
    return (await session.scalars(statement)).all()


async def revoke_key(session: AsyncSession, *, key: str, actor: str) -> ApiKey | None:
    """Revoke the key whose id or visible prefix is `key`; None when there is no such key."""
    try:
        condition = ApiKey.id == uuid.UUID(key)
    except ValueError:
        condition = ApiKey.prefix == key
    rows = (await session.scalars(select(ApiKey).where(condition))).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await audit.record(
            session,
            actor=actor,
            action=audit.KEY_REVOKED,
            target=str(row.id),
            details={"client": row.client, "name": row.name, "prefix": row.prefix},
        )
    return row
