"""The bot's HTTP client of the HappyKube ingress.

Every call sends the bot's own `X-API-Key` and an `X-Request-ID`, so one request can be
followed from a bot log line to the ingress's. Failures come back as the named errors below,
never as raw httpx exceptions: their messages hold URLs with the person's id, which must not
reach a log line.

Retries: GET, PATCH and DELETE are idempotent and are retried with exponential backoff on
transport errors and on 429/502/503/504 (honouring `Retry-After`). `POST /emotion` stores
the message, so it is retried only when the connection was never established.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, cast

import httpx
from pydantic import BaseModel, ValidationError

from contract import EmotionResult, Language, Report

_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# The request never left this process: safe to retry even a non-idempotent call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_RETRY_AFTER_S = 5.0
_M = TypeVar("_M", bound=BaseModel)


class IngressError(Exception):
    """Base of the errors the client raises; `code` and `request_id` are safe to log."""

    def __init__(self, code: str, *, status: int | None = None, request_id: str) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.request_id = request_id


class IngressUnavailableError(IngressError):
    """Raised when the ingress cannot be reached, times out, or answers 5xx after retries."""


class IngressRateLimitedError(IngressError):
    """Raised when the ingress still answers 429 after the retries."""


class IngressRejectedError(IngressError):
    """Raised on a 4xx the person can act on (`empty_text`, `text_too_long`, ...) or a bad key."""


class IngressUserNotFoundError(IngressError):
    """Raised when the ingress holds nothing for the person (404 `user_not_found`)."""


class Ingress(Protocol):
    """What the handlers need from the ingress; tests hand the bot a fake with this shape."""

    async def analyse(self, text: str, *, user_id: str, language: str | None) -> EmotionResult:
        """Classify and store one message."""
        ...

    async def report(self, user_id: str, days: int) -> Report:
        """The person's summary over the last `days` days."""
        ...

    async def export_csv(self, user_id: str) -> str:
        """The person's whole history as CSV text."""
        ...

    async def forget(self, user_id: str) -> bool:
        """Erase the person; False when there was nothing stored."""
        ...

    async def update_settings(
        self, user_id: str, *, language: str | None = None, timezone: str | None = None
    ) -> None:
        """Store the person's language and timezone with the ingress."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


INGRESS_BOT_DATA_KEY = "ingress"


def ingress_of(bot_data: Mapping[str, object]) -> Ingress:
    """The client `post_init` (or a test) put into the application's `bot_data`."""
    return cast(Ingress, bot_data[INGRESS_BOT_DATA_KEY])


class IngressClient:
    """httpx-based `Ingress`; open it in the bot's `post_init`, close it in `post_shutdown`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"X-API-Key": api_key, "User-Agent": "happykube-bot"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def analyse(self, text: str, *, user_id: str, language: str | None) -> EmotionResult:
        body: dict[str, Any] = {"text": text, "user_id": user_id}
        if language in {lang.value for lang in Language}:
            body["language"] = language
        response = await self._request("POST", "/api/v1/emotion", json=body, idempotent=False)
        return self._parse(EmotionResult, response)

    async def report(self, user_id: str, days: int) -> Report:
        response = await self._request(
            "GET", f"/api/v1/users/{user_id}/report", params={"days": days}, idempotent=True
        )
        return self._parse(Report, response)

    async def export_csv(self, user_id: str) -> str:
        response = await self._request(
            "GET", f"/api/v1/users/{user_id}/export", params={"format": "csv"}, idempotent=True
        )
        return response.text

    async def forget(self, user_id: str) -> bool:
        try:
            await self._request("DELETE", f"/api/v1/users/{user_id}", idempotent=True)
        except IngressUserNotFoundError:
            return False
        return True

    async def update_settings(
        self, user_id: str, *, language: str | None = None, timezone: str | None = None
    ) -> None:
        body = {k: v for k, v in (("language", language), ("timezone", timezone)) if v}
        await self._request("PATCH", f"/api/v1/users/{user_id}", json=body, idempotent=True)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        request_id = uuid.uuid4().hex
        headers = {"X-Request-ID": request_id}
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as err:
                retry = not last and (idempotent or isinstance(err, _NOT_SENT))
                if not retry:
                    code = "timeout" if isinstance(err, httpx.TimeoutException) else "unreachable"
                    raise IngressUnavailableError(code, request_id=request_id) from None
                await asyncio.sleep(self._backoff_s * 2.0 ** (attempt - 1))
                continue
            if idempotent and not last and response.status_code in _RETRY_STATUSES:
                await asyncio.sleep(self._retry_delay(response, attempt))
                continue
            return self._checked(response, request_id)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        backoff = self._backoff_s * 2.0 ** (attempt - 1)
        try:
            retry_after = float(response.headers.get("Retry-After", ""))
        except ValueError:
            return backoff
        return min(max(retry_after, backoff), _MAX_RETRY_AFTER_S)

    @staticmethod
    def _checked(response: httpx.Response, sent_request_id: str) -> httpx.Response:
        if response.is_success:
            return response
        request_id = response.headers.get("X-Request-ID", sent_request_id)
        code = f"http_{response.status_code}"
        try:
            body = response.json()
            code = str(body["error"]["code"])
            request_id = str(body.get("request_id") or request_id)
        except (ValueError, KeyError, TypeError):
            pass
        status = response.status_code
        if status == 404 and code == "user_not_found":
            raise IngressUserNotFoundError(code, status=status, request_id=request_id)
        if status == 429:
            raise IngressRateLimitedError(code, status=status, request_id=request_id)
        if status >= 500:
            raise IngressUnavailableError(code, status=status, request_id=request_id)
        raise IngressRejectedError(code, status=status, request_id=request_id)

    @staticmethod
    def _parse(model: type[_M], response: httpx.Response) -> _M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            request_id = response.headers.get("X-Request-ID", "unknown")
            raise IngressUnavailableError("bad_response", request_id=request_id) from None
