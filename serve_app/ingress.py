"""Ingress: the FastAPI app under `@serve.ingress`, and the mapping of our errors to HTTP.

Every error answers one JSON shape, `{"error": {"code", "message", "details"}, "request_id"}`,
with a stable `code`. Bad input is a 4xx and never reaches a model: the text limit and the
emptiness check run here, before the router is called. Anything unexpected is logged with
the request id and answered 500 without internals.

The request id is Serve's: the proxy takes the caller's `X-Request-ID` (or makes one),
echoes it in the response header of every answer, errors included, and carries it to the
router and model replicas. The ingress puts the same id into error bodies, log lines and the
stored record's metadata, and counts each answer by route template, status and language.
"""

import asyncio
import re
import time
import uuid
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from serve_app.asgi import HttpMiddleware
from serve_app.auth import (
    EMOTION_WRITE,
    KeyVerifier,
    require_history_access,
    require_scope,
    require_storing,
)
from serve_app.config import AppArgs, ProtectionSettings
from serve_app.cors import ConfiguredCors
from serve_app.errors import (
    ERRORS_BY_CODE,
    EmptyTextError,
    HappyKubeError,
    ModelUnavailableError,
    PayloadTooLargeError,
    TextTooLongError,
    TooManyTextsError,
    error_item,
)
from serve_app.observability import carry_batch_request_ids, get_logger, replica_metrics
from serve_app.observability import request_id as serve_request_id
from serve_app.production import INGRESS_SECRETS, check_production
from serve_app.ratelimit import RateLimiter, RateLimitHeaders
from serve_app.redis_conn import RedisLink
from serve_app.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    EmotionRequest,
    EmotionResult,
    ErrorBody,
    ErrorResponse,
    Language,
    Readiness,
)
from serve_app.text import has_content, normalize
from serve_app.users import get_caller, store_result
from serve_app.users import router as users_router

log = get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_PROBES = frozenset({"/healthz", "/readyz"})  # every few seconds: counted, logged at debug
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEFAULT_MAX_BODY_BYTES = 262_144
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 404, 413, 422, 429, 500, 503)
}


def error_response(request: Request, status: int, body: ErrorBody) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    payload = ErrorResponse(error=body, request_id=request_id)
    return JSONResponse(payload.model_dump(mode="json"), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Map our named errors, validation errors and HTTP errors to the one error shape."""

    @app.exception_handler(HappyKubeError)
    async def _named(request: Request, exc: HappyKubeError) -> JSONResponse:
        body = ErrorBody(code=exc.code, message=exc.message, details=exc.details)
        response = error_response(request, exc.status, body)
        response.headers.update(getattr(exc, "headers", None) or {})  # Retry-After on a 429
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Echo where and why, never the offending input: it may be a user's message.
        problems = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        body = ErrorBody(
            code="invalid_request",
            message="the request does not match the schema",
            details={"errors": problems},
        )
        return error_response(request, 422, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body that is not JSON (or not UTF-8): a schema problem.
            body = ErrorBody(code="invalid_request", message="the body is not valid UTF-8 JSON")
            return error_response(request, 422, body)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, ErrorBody(code=code, message=exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The route template, never the path: a path can carry a raw user id.
        log.error("unexpected_error", error=type(exc).__name__, route=route_template(request))
        body = ErrorBody(code="internal_error", message="internal error; quote the request id")
        return error_response(request, 500, body)


class BodyLimit(HttpMiddleware):
    """Refuse bodies over the app's `max_body_bytes` with 413, honest Content-Length or not.

    The body is read here in full (it is small by construction) and replayed to the app, so
    a chunked upload is cut off at the limit instead of being parsed.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = int(getattr(scope["app"].state, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))
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


api = FastAPI(
    title="HappyKube",
    version="0.1.0",
    description="Emotion and sentiment of short Italian and English chat messages.",
    responses=_ERROR_RESPONSES,
)
install_error_handlers(api)
api.add_middleware(BodyLimit)
api.add_middleware(RateLimitHeaders)
api.add_middleware(ConfiguredCors)
api.include_router(users_router, dependencies=[Depends(require_history_access)])


class RequestId(HttpMiddleware):
    """Name every request, count and log its answer; a plain ASGI middleware, outermost.

    Serve's proxy takes the caller's X-Request-ID or makes one, echoes it on the response
    and hands it to every replica the request reaches: that is THE id, in error bodies, logs
    and stored records too. Outside Serve (the app mounted directly) a safe caller id, or a
    fresh one, stands in, and this middleware echoes it.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = serve_request_id()
        served = rid != "-"
        if not served:
            given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
            rid = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
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
            _record_answer(Request(scope), status, time.perf_counter() - start)


# Added last, so outermost: every answer below it, refusals included, is named and counted.
api.add_middleware(RequestId)


def route_template(request: Request) -> str:
    """The matched route's template (`/api/v1/users/{user_id}`), never the raw path."""
    route = request.scope.get("route")
    if route is None:  # refused before routing (413), or no route at all (404)
        for candidate in request.app.router.routes:
            if candidate.matches(request.scope)[0] is not Match.NONE:
                route = candidate
                break
    return str(getattr(route, "path", "unmatched"))


def _record_answer(request: Request, status: int, elapsed_s: float) -> None:
    """Count the answer by route, status and language, and log it (no path, no body)."""
    fields = {
        "route": route_template(request),
        "status": str(status),
        # The detected language of the answered item(s); see `_note_language`.
        "language": str(getattr(request.state, "language", None) or "none"),
    }
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.requests.inc(tags=fields)
    emit = log.debug if fields["route"] in _PROBES else log.info
    emit("request_answered", **fields, duration_ms=round(elapsed_s * 1000, 2))


def _note_language(request: Request, languages: set[str]) -> None:
    """Remember the answered language for the request metric: one, "mixed" or none."""
    if languages:
        request.state.language = languages.pop() if len(languages) == 1 else "mixed"


def check_text(text: str, max_chars: int) -> str:
    """Validate one raw text and return it normalised; raise the matching named error."""
    if len(text) > max_chars:
        raise TextTooLongError(
            f"text has {len(text)} characters; the limit is {max_chars}",
            limit=max_chars,
            length=len(text),
        )
    normalised = normalize(text)
    if not has_content(normalised):
        raise EmptyTextError("text is empty once whitespace and control characters are removed")
    return normalised


def _raise_item_error(item: dict[str, Any]) -> None:
    err = item["error"]
    cls = ERRORS_BY_CODE.get(err.get("code", ""), ModelUnavailableError)
    raise cls(err.get("message", ""), **(err.get("details") or {}))


@serve.deployment(
    max_ongoing_requests=256,
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress(api)
class Ingress:
    def __init__(self, args: AppArgs, router: DeploymentHandle[Any]) -> None:
        from db.session import Database

        check_production(secrets=INGRESS_SECRETS)
        self.args = args
        self.router = router
        # Single-message requests in this replica now: one alone skips the gather (below).
        self._singles = 0
        api.state.metrics = replica_metrics()
        # The history database (DATABASE_URL, or the local SQLite file); see db/settings.py.
        self.database = Database.from_settings()
        api.state.database = self.database
        api.state.max_body_bytes = args.max_body_bytes
        protection, settings = args.protection, ProtectionSettings()
        self.redis = RedisLink(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            timeout_s=protection.redis_timeout_s,
        )
        api.state.limiter = RateLimiter(self.redis, protection, settings.pepper())
        bootstrap = settings.bootstrap_api_key
        api.state.keys = KeyVerifier(
            settings.pepper(),
            cache_s=protection.key_cache_s,
            bootstrap_key=bootstrap.get_secret_value() if bootstrap else None,
        )
        api.state.cors_origins = settings.cors_origin_list()
        self._gathered.set_max_batch_size(args.gather.max_texts)
        self._gathered.set_batch_wait_timeout_s(args.gather.wait_s)

    # Several gathered calls may be in flight at once: a gather waits on the router, not the CPU.
    # 16: with gathers of at most 16 texts, 4 in flight could not keep up with a steady half
    # of the peak load (en_int8 68.7 of 73 msg/s offered, p99 1011 ms; 16 in flight: 71.6,
    # 450 ms; en_fp32 p99 1067 -> 918 ms; Italian unchanged). Uncapped (64) was no better
    # than 4 on the slower machine (BENCHMARKS.md, 2026-11-26).
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005, max_concurrent_batches=16)  # type: ignore[untyped-decorator]
    async def _gathered(self, requests: list[tuple[str, Language | None]]) -> list[dict[str, Any]]:
        """Concurrent single-message requests, sent to the router together (`GatherArgs`).

        One router call per language hint among them; a failed call answers its requests
        with an error item, as the router does for a failed model.
        """
        by_hint: dict[Language | None, list[int]] = {}
        for i, (_, hint) in enumerate(requests):
            by_hint.setdefault(hint, []).append(i)
        groups = list(by_hint.items())
        answers = await asyncio.gather(
            *(self._analyze([requests[i][0] for i in idx], hint) for hint, idx in groups),
            return_exceptions=True,
        )
        out: list[dict[str, Any]] = [{} for _ in requests]
        for (_, idx), answer in zip(groups, answers, strict=True):
            for pos, i in enumerate(idx):
                if isinstance(answer, HappyKubeError):
                    out[i] = error_item(answer)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    out[i] = answer[pos]
        return out

    async def _alone(self, text: str, hint: Language | None) -> dict[str, Any]:
        """One message straight to the router, answered as `_gathered` answers it."""
        try:
            (item,) = await self._analyze([text], hint)
        except HappyKubeError as exc:
            return error_item(exc)
        return item

    async def _analyze(self, texts: list[str], hint: Language | None) -> list[dict[str, Any]]:
        try:
            with carry_batch_request_ids():  # a gathered call names every request it serves
                items: list[dict[str, Any]] = await self.router.analyze.remote(texts, hint)
        except Exception as exc:
            log.warning("router_failed", error=type(exc).__name__)
            raise ModelUnavailableError("the analysis service is unavailable") from exc
        return items

    @api.post(
        "/api/v1/emotion",
        response_model=EmotionResult,
        tags=["emotion"],
        dependencies=[Depends(require_scope(EMOTION_WRITE))],
    )
    async def emotion(self, body: EmotionRequest, request: Request) -> EmotionResult:
        """Analyse one message; with a `user_id`, store it in that user's encrypted history."""
        if body.user_id is not None:
            await require_storing(request, body.user_id)  # history:write, per-user rate
        text = check_text(body.text, self.args.max_text_chars)
        self._singles += 1
        try:
            if self._singles == 1:
                # Alone: no other request would join it, so the gather's wait is pure latency
                # (it then waited again in the model's batch). Under load they still gather.
                item = await self._alone(text, body.language)
            else:
                item = await self._gathered((text, body.language))
        finally:
            self._singles -= 1
        if "error" in item:
            _raise_item_error(item)
        result = EmotionResult.model_validate(item)
        _note_language(request, {str(result.language)})
        if body.user_id is not None:
            # Answered only after the commit: an acknowledged write is a stored write.
            record_id = await store_result(
                self.database,
                caller=get_caller(request),
                user_id=body.user_id,
                text=body.text,
                result=result,
                metadata={"request_id": request.state.request_id},
            )
            result.stored, result.record_id = True, str(record_id)
        return result

    @api.post(
        "/api/v1/emotion/batch",
        response_model=BatchResponse,
        tags=["emotion"],
        dependencies=[Depends(require_scope(EMOTION_WRITE))],
    )
    async def emotion_batch(self, body: BatchRequest, request: Request) -> BatchResponse:
        """Analyse up to `max_batch_texts` messages; answers in order, errors per item."""
        if len(body.texts) > self.args.max_batch_texts:
            raise TooManyTextsError(
                f"{len(body.texts)} texts; the limit is {self.args.max_batch_texts}",
                limit=self.args.max_batch_texts,
            )
        results: list[BatchItem | None] = [None] * len(body.texts)
        valid: list[tuple[int, str]] = []
        for i, raw in enumerate(body.texts):
            try:
                valid.append((i, check_text(raw, self.args.max_text_chars)))
            except HappyKubeError as exc:
                results[i] = BatchItem(
                    error=ErrorBody(code=exc.code, message=exc.message, details=exc.details)
                )
        if valid:
            items = await self._analyze([text for _, text in valid], body.language)
            for (i, _), item in zip(valid, items, strict=True):
                if "error" in item:
                    results[i] = BatchItem(error=ErrorBody.model_validate(item["error"]))
                else:
                    results[i] = BatchItem(result=EmotionResult.model_validate(item))
        _note_language(request, {str(r.result.language) for r in results if r and r.result})
        return BatchResponse(results=[r for r in results if r is not None])

    @api.get("/healthz", tags=["health"])
    async def healthz(self) -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @api.get("/readyz", response_model=Readiness, tags=["health"])
    async def readyz(self) -> JSONResponse:
        """Ready only when every model deployment has answered."""
        try:
            models: dict[str, bool] = await asyncio.wait_for(self.router.ready.remote(), 5.0)
        except Exception:
            models = {name: False for name in self.args.models}
        reasons = [f"model {name} has not answered" for name, ok in models.items() if not ok]
        ready = not reasons
        status = "ready" if ready else "not_ready"
        if not await self.redis.probe():
            # Still serving (no cache, per-replica rate limits): degraded, not unready.
            status = "degraded" if ready else status
            reasons.append(self.redis.reason or "redis unavailable")
        state = Readiness(status=status, models=models, reasons=reasons)
        return JSONResponse(state.model_dump(mode="json"), status_code=200 if ready else 503)
