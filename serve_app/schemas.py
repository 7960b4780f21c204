"""The HTTP API's models, from `contract` (their one home, which the bot imports as well)."""

from contract.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    Emotion,
    EmotionRequest,
    EmotionResult,
    ErrorBody,
    ErrorResponse,
    Language,
    ModelRef,
    Readiness,
    Sentiment,
)

__all__ = [
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "Emotion",
    "EmotionRequest",
    "EmotionResult",
    "ErrorBody",
    "ErrorResponse",
    "Language",
    "ModelRef",
    "Readiness",
    "Sentiment",
]
