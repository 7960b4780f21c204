"""The mood-history API of one client's users, and the store call of the emotion route.

Wiring: the app factory (serve_app/api.py) includes `router` behind the history guard;
routes get the database and the authenticated caller from serve_app/deps.py. After
classifying a message that carries a `user_id`, the emotion route calls `store_result(...)`
and answers its record id.

Object-level authorisation: a user belongs to the client whose key created it, and any key of
that client reaches it (keys rotate, histories stay). Every lookup is by (client, hash of the
id keyed by the client), so another client's user is simply not found: 404, never 403, so
that answers do not reveal which ids exist elsewhere. The audit trail names the key. Raw user
ids and message texts never reach a log line; the database sees only the keyed hash, times,
and one sealed blob per record holding the text and every label (db/sealed.py). A record
that cannot be decrypted is reported, never a reason to fail an export, a report or an
erasure.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from contract import (
    EXPORT_COLUMNS,
    UNREADABLE_HEADER,
    USER_ID_PATTERN,
    EmotionResult,
    Export,
    ExportRecord,
    Language,
    Report,
    UserSettings,
    UserView,
)
from db import audit, crud
from db.crypto import CryptoError
from db.models import User
from db.report import build_report
from db.sealed import Contents
from db.session import Database
from serve_app.deps import CallerDep, DatabaseDep
from serve_app.errors import StorageUnavailableError, UserNotFoundError
from serve_app.observability import get_logger, replica_metrics

log = get_logger(__name__)

# Errors that mean "the database is not there right now", answered 503 rather than 500.
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)

router = APIRouter(prefix="/api/v1/users", tags=["users"])

# Operation ids of the users API. OpenAPI links name them, so a client (and the stateful fuzz,
# tests/e2e/test_schemathesis.py) can follow a stored analysis to the user's report, export,
# settings and erasure, and an erasure to the report that is then gone.
REPORT, EXPORT, UPDATE, ERASE = "user_report", "user_export", "user_update", "user_erase"


def user_links(user_id: str, *targets: str) -> dict[str, Any]:
    """A response's OpenAPI `links` to `targets`, whose `user_id` is the runtime expression
    `user_id` (e.g. `$request.body#/user_id`)."""
    return {
        "links": {op: {"operationId": op, "parameters": {"user_id": user_id}} for op in targets}
    }


UserId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=USER_ID_PATTERN,
        description="The end user's id, e.g. Telegram's: 1-64 characters of `A-Za-z0-9_.:-`,"
        " not `.` or `..`.",
    ),
]


@asynccontextmanager
async def storage(database: Database) -> AsyncIterator[AsyncSession]:
    """A transaction whose connection failures surface as `StorageUnavailableError`."""
    try:
        async with database.session() as session:
            yield session
    except _UNAVAILABLE as exc:
        log.warning("history_db_unavailable", error=type(exc).__name__)
        raise StorageUnavailableError("the history database is unavailable") from exc


async def store_result(
    database: Database,
    *,
    client: str,
    user_id: str,
    text: str,
    result: EmotionResult,
    metadata: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Store one analysed message for the client's user (created on first use); return its id."""
    emotion_model = next(
        (ref for ref in result.models if "emotion" in ref.name),
        result.models[0] if result.models else None,
    )
    meta: dict[str, Any] = {
        "language_confidence": result.language_confidence,
        "sentiment_score": result.sentiment_scores.get(result.sentiment),
        "models": [ref.model_dump() for ref in result.models],
        **(metadata or {}),
    }
    start = time.perf_counter()
    async with storage(database) as session:
        user = await crud.touch_user(
            session, client=client, user_hash=database.user_hash(user_id, client=client)
        )
        contents = Contents(
            text=text,
            emotion=result.emotion,
            emotion_score=result.emotion_scores.get(result.emotion, 0.0),
            sentiment=result.sentiment,
            language=result.language,
            model=emotion_model.name if emotion_model else "unknown",
            model_revision=emotion_model.revision if emotion_model else None,
            meta=meta,  # the caller's request id included: sealed with the rest
        )
        record = await crud.add_record(
            session, key_ring=database.key_ring, user_id=user.id, contents=contents
        )
    elapsed = time.perf_counter() - start  # the commit included: the block has exited
    replica_metrics().db_write_seconds.observe(elapsed)
    log.info("record_stored", record_id=str(record.id), duration_ms=round(elapsed * 1000, 2))
    return record.id


async def _owned_user(session: AsyncSession, database: Database, client: str, user_id: str) -> User:
    hashed = database.user_hash(user_id, client=client)
    user = await crud.find_user(session, client=client, user_hash=hashed)
    if user is None:
        raise UserNotFoundError("no such user")
    return user


@router.get(
    "/{user_id}/report",
    response_model=Report,
    operation_id=REPORT,
    responses={200: user_links("$request.path.user_id", EXPORT, ERASE)},
)
async def report(
    user_id: UserId,
    database: DatabaseDep,
    caller: CallerDep,
    days: Annotated[int, Query(ge=1, le=366, description="Window, today included.")] = 30,
) -> Report:
    """Counts per emotion and sentiment, a daily series and the streak, in the user's zone."""
    async with storage(database) as session:
        user = await _owned_user(session, database, caller.client, user_id)
        built = await build_report(
            session, key_ring=database.key_ring, user=user, external_id=user_id, days=days
        )
    if built.unreadable:
        log.warning("records_unreadable", user=str(user.id), count=built.unreadable)
    return built


@router.get(
    "/{user_id}/export",
    response_model=Export,
    operation_id=EXPORT,
    responses={
        200: {
            "content": {"text/csv": {}},
            "headers": {
                UNREADABLE_HEADER: {
                    "description": "CSV only: how many records cannot be decrypted and are"
                    " left out (their ids are in the JSON export's `unreadable`).",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
            **user_links("$request.path.user_id", ERASE),
        }
    },
)
async def export(
    user_id: UserId,
    database: DatabaseDep,
    caller: CallerDep,
    export_format: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    """The user's whole history, decrypted, oldest first (GDPR access and portability).

    A record that cannot be decrypted does not fail the export: it is left out and named in
    `unreadable` (counted in a header in CSV), so the rest stays accessible.
    """
    records: list[ExportRecord] = []
    unreadable: list[uuid.UUID] = []
    async with storage(database) as session:
        user = await _owned_user(session, database, caller.client, user_id)
        details = {"format": export_format}
        await audit.record(
            session,
            actor=caller.key_id,
            action=audit.USER_EXPORTED,
            target=str(user.id),
            details=details,
        )
        async for record in crud.iter_records(session, user_id=user.id):
            try:
                contents = crud.open_record(database.key_ring, record)
            except CryptoError as exc:
                log.warning("record_unreadable", record_id=str(record.id), error=type(exc).__name__)
                unreadable.append(record.id)
                continue
            shown = contents.model_dump(exclude={"meta"})
            records.append(ExportRecord(id=record.id, created_at=record.created_at, **shown))
    headers = {"Cache-Control": "no-store"}
    if export_format == "json":
        body = Export(records=records, unreadable=unreadable).model_dump_json()
        return Response(body, media_type="application/json", headers=headers)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for item in records:
        writer.writerow(item.model_dump(mode="json"))
    headers["Content-Disposition"] = 'attachment; filename="happykube-export.csv"'
    headers[UNREADABLE_HEADER] = str(len(unreadable))
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.patch(
    "/{user_id}",
    response_model=UserView,
    operation_id=UPDATE,
    responses={200: user_links("$response.body#/user_id", REPORT, EXPORT, ERASE)},
)
async def update_settings(
    user_id: UserId, settings: UserSettings, database: DatabaseDep, caller: CallerDep
) -> UserView:
    """Set the user's language and timezone; creates the client's user if it is new."""
    client = caller.client
    async with storage(database) as session:
        user = await crud.touch_user(
            session, client=client, user_hash=database.user_hash(user_id, client=client)
        )
        user = await crud.update_user(
            session, user, language=settings.language, timezone=settings.timezone
        )
        return UserView(
            user_id=user_id,
            language=Language(user.language) if user.language else None,
            timezone=user.timezone,
            created_at=user.created_at,
            last_seen_at=user.last_seen_at,
        )


@router.delete(
    "/{user_id}",
    status_code=204,
    operation_id=ERASE,
    responses={204: user_links("$request.path.user_id", REPORT, EXPORT)},
)
async def delete(user_id: UserId, database: DatabaseDep, caller: CallerDep) -> Response:
    """Erase the user and every record (GDPR erasure); a second call answers 404."""
    async with storage(database) as session:
        user = await _owned_user(session, database, caller.client, user_id)
        await audit.record(
            session, actor=caller.key_id, action=audit.USER_ERASED, target=str(user.id)
        )
        await crud.delete_user(session, user_id=user.id)
    log.info("user_erased", user=str(user.id))
    return Response(status_code=204)
