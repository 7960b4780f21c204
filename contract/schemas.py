"""Request and response models of the HTTP API, its error shape, and the label vocabularies.

Every model here is a shape some other process reads: the bot (bot/client.py), an API
client, or the OpenAPI document. The service's modules import them from here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Language(StrEnum):
    IT = "it"
    EN = "en"


class Emotion(StrEnum):
    ANGER = "anger"
    DISGUST = "disgust"
    FEAR = "fear"
    JOY = "joy"
    NEUTRAL = "neutral"
    SADNESS = "sadness"
    SURPRISE = "surprise"


class Sentiment(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


# An end user's id: what the users API can address in its path, so whatever is stored can be
# read, exported and erased again. Telegram's numeric ids fit, as do most other systems'.
# 1-64 of [A-Za-z0-9_.:-], except "." and ".." (HTTP clients collapse such a path segment):
# the three branches are "no dot first", "one dot, then no dot" and "two dots, then more".
USER_ID_PATTERN = (
    r"^(?:[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}"
    r"|\.[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,62}"
    r"|\.\.[A-Za-z0-9_.:-]{1,62})$"
)


class EmotionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The message to analyse.", examples=["Oggi sono felicissima!"])
    language: Language | None = Field(
        default=None, description="Optional hint; used when detection is unsure."
    )
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=USER_ID_PATTERN,
        description="The end user's id (e.g. the Telegram id), 1-64 characters of"
        " `A-Za-z0-9_.:-`, not `.` or `..`. Given: the result is stored.",
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, description="Messages to analyse, answered in order.")
    language: Language | None = None


class ModelRef(BaseModel):
    name: str
    revision: str


class EmotionResult(BaseModel):
    language: Language
    language_confidence: float
    emotion: Emotion
    emotion_scores: dict[str, float]
    sentiment: Sentiment
    sentiment_scores: dict[str, float]
    models: list[ModelRef]
    stored: bool = False
    record_id: str | None = None


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `empty_text`.")
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
    request_id: str | None = None


class BatchItem(BaseModel):
    """One answer of a batch: exactly one of `result` and `error` is set."""

    result: EmotionResult | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


class Readiness(BaseModel):
    status: str
    models: dict[str, bool]
    reasons: list[str] = []


# The mood-history API of one client's users: /api/v1/users/{user_id}[/report|/export].
class UserSettings(BaseModel):
    """The preferences the bot sets; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    language: Language | None = None
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Rome"])

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError("not an IANA timezone name") from exc
        return value


class UserView(BaseModel):
    user_id: str
    language: Language | None
    timezone: str
    created_at: datetime
    last_seen_at: datetime


class RecordContents(BaseModel):
    """What one stored record says: its text and labels (sealed together in the database)."""

    text: str
    emotion: str
    emotion_score: float
    sentiment: str | None
    language: str | None
    model: str
    model_revision: str | None


class ExportRecord(RecordContents):
    id: uuid.UUID
    created_at: datetime


# The response header of a CSV export that counts the records left out as unreadable.
UNREADABLE_HEADER = "X-Unreadable-Count"


class Export(BaseModel):
    records: list[ExportRecord] = Field(description="Every readable record, oldest first.")
    unreadable: list[uuid.UUID] = Field(
        default_factory=list,
        description="Ids of the user's records that cannot be decrypted (a key missing from"
        " the key ring, or a record changed in the database), left out of `records`. The CSV"
        f" export counts them in its `{UNREADABLE_HEADER}` header.",
    )


# The columns of the CSV export, in order (`GET /api/v1/users/{id}/export?format=csv`).
EXPORT_COLUMNS = (
    "id",
    "created_at",
    "text",
    "emotion",
    "emotion_score",
    "sentiment",
    "language",
    "model",
    "model_revision",
)


class DailyEntry(BaseModel):
    """One calendar day of a report, in the user's timezone."""

    date: date
    total: int
    emotions: dict[str, int]
    sentiment: dict[str, int]


class Report(BaseModel):
    """A user's mood over the last `days` days, today included; `daily` is oldest first.

    `streak_days`: consecutive days with an entry up to today; a today without one yet does
    not break the streak (db/report.py computes it).
    """

    user_id: str
    days: int
    total: int
    emotion_counts: dict[str, int]
    sentiment_counts: dict[str, int]
    daily: list[DailyEntry]
    dominant_emotion: str | None
    streak_days: int
    unreadable: int = Field(
        default=0,
        description="Records in the window that cannot be decrypted (a key missing from the"
        " key ring, or a record changed in the database): left out of every count, the"
        " streak included.",
    )
