"""The shapes that cross a process boundary: the HTTP API's requests, answers and errors.

The bot imports this package (and its HTTP client) and nothing else of the service, so it
runs without Ray, SQLAlchemy or FastAPI. Only pydantic and the standard library are used
here; an import-linter contract in pyproject.toml keeps it that way.
"""

from contract.schemas import (
    EXPORT_COLUMNS,
    UNREADABLE_HEADER,
    USER_ID_PATTERN,
    BatchItem,
    BatchRequest,
    BatchResponse,
    DailyEntry,
    Emotion,
    EmotionRequest,
    EmotionResult,
    ErrorBody,
    ErrorResponse,
    Export,
    ExportRecord,
    Language,
    ModelRef,
    Readiness,
    RecordContents,
    Report,
    Sentiment,
    UserSettings,
    UserView,
)

__all__ = [
    "EXPORT_COLUMNS",
    "UNREADABLE_HEADER",
    "USER_ID_PATTERN",
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "DailyEntry",
    "Emotion",
    "EmotionRequest",
    "EmotionResult",
    "ErrorBody",
    "ErrorResponse",
    "Export",
    "ExportRecord",
    "Language",
    "ModelRef",
    "Readiness",
    "RecordContents",
    "Report",
    "Sentiment",
    "UserSettings",
    "UserView",
]
