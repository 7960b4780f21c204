"""The app's plain ASGI middlewares: the request id (outermost) and the body limit, and the
one middleware of Serve's HTTP proxy, which vets a caller's request id at the edge.

The request id is Serve's: the proxy takes the caller's `X-Request-ID` (or makes one),
echoes it in the response header of every answer, errors included, and carries it to the
router and model replicas. The ingress puts the same id into error bodies, log lines and the
stored record's metadata, and counts each answer by route template, status and language.

A caller's id is kept only when it is 1-128 printable ASCII characters (no leading or
trailing space); anything else (control characters, bytes beyond ASCII, a novel) is replaced
by a fresh one before it can reach a log line, an error body or the database. In Serve the
proxy does it (`RequestIdGuard`, installed by `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=
serve_app.middleware.proxy_middlewares` in the environment Ray starts with); the ingress
checks again, so a cluster started without that variable still never uses a bad id.
"""

import re
import time
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.asgi import HttpMiddleware
from serve_app.errors import PayloadTooLargeError
from serve_app.http_errors import REQUEST_ID_HEADER, route_template
from serve_app.observability import get_logger, replace_request_id
from serve_app.observability import request_id as serve_request_id
from serve_app.schemas import ErrorBody, ErrorResponse

log = get_logger(__name__)

_PROBES = frozenset({"/healthz", "/readyz"})  # every few seconds: counted, logged at debug
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$")


def acceptable_request_id(value: str | None) -> bool:
    """True for a caller's id worth keeping: 1-128 printable ASCII characters."""
    return value is not None and _ACCEPTABLE_REQUEST_ID.fullmatch(value) is not None


class RequestIdGuard:
    """Serve's proxy middleware: a caller's unacceptable `X-Request-ID` becomes a fresh id
    before Serve reads it, so the header echoed, the replicas' ids and the logs all agree."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = MutableHeaders(scope=scope)
            given = headers.getlist(REQUEST_ID_HEADER)
            if given and (len(given) > 1 or not acceptable_request_id(given[0])):
                del headers[REQUEST_ID_HEADER]
                headers[REQUEST_ID_HEADER] = uuid.uuid4().hex
        await self.app(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`'s target: the middlewares of Serve's proxy."""
    return [Middleware(RequestIdGuard)]


DEFAULT_MAX_BODY_BYTES = 262_144


class RequestId(HttpMiddleware):
    """Name every request, count and log its answer; a plain ASGI middleware, outermost.

    Serve's proxy takes the caller's X-Request-ID or makes one, echoes it on the response
    and hands it to every replica the request reaches: that is THE id, in error bodies, logs
    and stored records too. Outside Serve (the app mounted directly) a safe caller id, or a
    fresh one, stands in, and this middleware echoes it.
    """

    def __init__(self, app: ASGIApp, metrics: Any = None) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = serve_request_id()
        served = rid != "-"
        if not served:
            given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
            rid = given if acceptable_request_id(given) else uuid.uuid4().hex
        elif not acceptable_request_id(rid):  # a proxy without RequestIdGuard let it through
            rid = replace_request_id(uuid.uuid4().hex)
        scope.setdefault("state", {})["request_id"] = rid
        start, status = time.perf_counter(), 500

        async def send_named(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if not served:
                    MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_named)
        finally:
            _record_answer(Request(scope), self.metrics, status, time.perf_counter() - start)


def _record_answer(request: Request, metrics: Any, status: int, elapsed_s: float) -> None:
    """Count the answer by route, status and language, and log it (no path, no body)."""
    fields = {
        "route": route_template(request),
        "status": str(status),
        # The detected language of the answered item(s); see `_note_language`.
        "language": str(getattr(request.state, "language", None) or "none"),
    }
    if metrics is not None:
        metrics.requests.inc(tags=fields)
    emit = log.debug if fields["route"] in _PROBES else log.info
    emit("request_answered", **fields, duration_ms=round(elapsed_s * 1000, 2))


class BodyLimit(HttpMiddleware):
    """Refuse bodies over `limit` (the app's `max_body_bytes`) with 413, whatever the
    Content-Length says.

    The body is read here in full (it is small by construction) and replayed to the app, so
    a chunked upload is cut off at the limit instead of being parsed.
    """

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_MAX_BODY_BYTES) -> None:
        super().__init__(app)
        self.limit = limit

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _send_too_large(scope, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await _send_too_large(scope, send, limit)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_too_large(scope: Scope, send: Send, limit: int) -> None:
    body = ErrorResponse(
        error=ErrorBody(
            code=PayloadTooLargeError.code,
            message=f"request body exceeds {limit} bytes",
            details={"limit": limit},
        )
    )
    body.request_id = scope.get("state", {}).get("request_id")
    response = JSONResponse(body.model_dump(mode="json"), status_code=413)
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
