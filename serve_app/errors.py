"""The named errors the ingress maps to HTTP answers with a stable `code`."""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from contract import ErrorBody


class HappyKubeError(Exception):
    """Base of every error the API answers with its own code instead of a 500."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or None


def error_body(exc: BaseException) -> ErrorBody:
    """`exc` as the error of one item of a multi-text answer.

    Our named errors keep their code, message and details; anything else is `internal_error`
    with a generic message: an exception's text may carry internals (a path, a host).
    """
    if isinstance(exc, HappyKubeError):
        return ErrorBody(code=exc.code, message=exc.message, details=exc.details or None)
    return ErrorBody(code="internal_error", message="internal error; quote the request id")


def raise_error(body: ErrorBody) -> NoReturn:
    """Raise the named error an item's `ErrorBody` stands for (unknown codes: unavailable)."""
    cls = ERRORS_BY_CODE.get(body.code, ModelUnavailableError)
    raise cls(body.message, **(body.details or {}))


class InvalidRequestError(HappyKubeError):
    """Raised when a request body does not match the schema."""

    status = 422
    code = "invalid_request"


class EmptyTextError(HappyKubeError):
    """Raised when a text holds nothing to analyse once whitespace and control chars go."""

    status = 422
    code = "empty_text"


class InvalidTextError(HappyKubeError):
    """Raised when a text cannot be encoded as UTF-8 (a lone surrogate); `position` says where."""

    status = 422
    code = "invalid_text"


class TextTooLongError(HappyKubeError):
    """Raised when a text is longer than the configured `max_text_chars`."""

    status = 422
    code = "text_too_long"


class TooManyTextsError(HappyKubeError):
    """Raised when a batch holds more texts than `max_batch_texts`."""

    status = 422
    code = "too_many_texts"


class UnsupportedLanguageError(HappyKubeError):
    """Raised when the detected language has no model (the detected one is in `details`)."""

    status = 422
    code = "unsupported_language"


class PayloadTooLargeError(HappyKubeError):
    """Raised when the request body exceeds `max_body_bytes`."""

    status = 413
    code = "payload_too_large"


class ModelUnavailableError(HappyKubeError):
    """Raised when a model deployment cannot answer (replica down, overloaded, timed out)."""

    status = 503
    code = "model_unavailable"


class UserNotFoundError(HappyKubeError):
    """Raised when the caller has no user with that id (also when another caller does)."""

    status = 404
    code = "user_not_found"


class StorageUnavailableError(HappyKubeError):
    """Raised when the history database cannot be reached or does not answer in time."""

    status = 503
    code = "storage_unavailable"


class UnauthorizedError(HappyKubeError):
    """Raised when a request carries no API key, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"


class ForbiddenError(HappyKubeError):
    """Raised when a valid API key lacks the scope a route needs (the scope is in `details`)."""

    status = 403
    code = "forbidden"


class RateLimitedError(HappyKubeError):
    """Raised when a key or an end user is over its rate; `headers` say when to come back."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, headers: dict[str, str], **details: Any) -> None:
        super().__init__(message, **details)
        self.headers = headers


class BatchExceedsRateError(HappyKubeError):
    """Raised when a batch costs more units than its key's whole quota: no wait would let it
    through, so it is a 422 to split, not a 429 to retry; `texts`, `limit`, `period_s`."""

    status = 422
    code = "batch_exceeds_rate"


class ModelLoadError(Exception):
    """Raised when a checkpoint cannot be loaded or does not match its configured labels."""


# Codes a per-item batch error or a router answer may carry, mapped back to their class.
ERRORS_BY_CODE: dict[str, type[HappyKubeError]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        EmptyTextError,
        InvalidTextError,
        TextTooLongError,
        TooManyTextsError,
        UnsupportedLanguageError,
        PayloadTooLargeError,
        ModelUnavailableError,
    )
}
