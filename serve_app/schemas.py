"""Request and response models of the HTTP API, and the label vocabularies."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class EmotionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The message to analyse.", examples=["Oggi sono felicissima!"])
    language: Language | None = Field(
        default=None, description="Optional hint; used when detection is unsure."
    )
    user_id: str | None = Field(
        default=None,
        max_length=64,
        description="The end user's id (e.g. the Telegram id). Given: the result is stored.",
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
