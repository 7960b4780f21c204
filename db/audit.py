"""The audit trail: key creation and revocation, exports and erasures; who, what, when.

An event is written in the same transaction as the act it records, so a committed erasure
always has its event and a rolled-back one never does. Events name objects by id only (an
API key id, a user's row id), never by a message, a Telegram id or a key.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEvent

KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
USER_EXPORTED = "user.exported"
USER_ERASED = "user.erased"
ACTIONS = (KEY_CREATED, KEY_REVOKED, USER_EXPORTED, USER_ERASED)


def cli_actor() -> str:
    """The actor of an operator command: the OS account that ran it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary uid in a container
        name = "unknown"
    return f"cli:{name}"[:64]


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one event to the caller's transaction; `details` must hold no personal content."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; known: {ACTIONS}")
    event = AuditEvent(actor=actor[:64], action=action, target=target, details=details or {})
    session.add(event)
    await session.flush()
    return event


async def query(
    session: AsyncSession,
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> Sequence[AuditEvent]:
    """The newest events first, filtered by whichever of the arguments are given."""
    statement = select(AuditEvent).order_by(AuditEvent.created_at.desc()).limit(limit)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    if actor is not None:
        statement = statement.where(AuditEvent.actor == actor)
    if target is not None:
        statement = statement.where(AuditEvent.target == target)
    if since is not None:
        statement = statement.where(AuditEvent.created_at >= since)
    return (await session.scalars(statement)).all()
