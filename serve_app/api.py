"""`create_app(services)`: the HTTP API, built from its collaborators.

The ingress deployment builds one per replica (serve_app/ingress.py); tests build the same
app over real PostgreSQL and Redis and drive it through `httpx.ASGITransport`. Bad input is
a 4xx and never reaches a model: the text limit and the emptiness check run here, before the
router is called.
"""

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from serve_app.auth import HEADER
from serve_app.deps import (
    CallerDep,
    Services,
    ServicesDep,
    attach,
    charge_key,
    database_of,
    require_history_access,
    require_scope,
    require_storing,
)
from serve_app.errors import (
    EmptyTextError,
    HappyKubeError,
    InvalidTextError,
    TextTooLongError,
    TooManyTextsError,
    raise_error,
)
from serve_app.http_errors import REQUEST_ID_HEADER, install_error_handlers
from serve_app.keys import EMOTION_WRITE
from serve_app.middleware import BodyLimit, RequestId
from serve_app.ratelimit import RateLimitHeaders
from serve_app.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    EmotionRequest,
    EmotionResult,
    ErrorBody,
    ErrorResponse,
    Readiness,
)
from serve_app.text import has_content, normalize
from serve_app.users import ERASE, EXPORT, REPORT, UPDATE, store_result, user_links
from serve_app.users import router as users_router

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 404, 413, 422, 429, 500, 503)
}

analysis = APIRouter()


def create_app(services: Services) -> FastAPI:
    """The API over `services`; CORS headers only for `args.cors_origins` (none: no CORS)."""
    app = FastAPI(
        title="HappyKube",
        version="0.1.0",
        description="Emotion and sentiment of short Italian and English chat messages.",
        responses=_ERROR_RESPONSES,
    )
    attach(app, services)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=services.args.max_body_bytes)
    app.add_middleware(RateLimitHeaders)
    cors_origins = services.args.cors_origins
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[HEADER, "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[
                REQUEST_ID_HEADER,
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
            max_age=600,
        )
    app.include_router(analysis)
    app.include_router(users_router, dependencies=[Depends(require_history_access)])
    # Added last, so outermost: every answer below it, refusals included, is named and counted.
    app.add_middleware(RequestId, metrics=services.metrics)
    return app


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
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no model, no store, no cipher
        raise InvalidTextError(
            f"text is not valid Unicode: a lone surrogate at position {exc.start}",
            position=exc.start,
        ) from None
    normalised = normalize(text)
    if not has_content(normalised):
        raise EmptyTextError("text is empty once whitespace and control characters are removed")
    return normalised


@analysis.post(
    "/api/v1/emotion",
    response_model=EmotionResult,
    tags=["emotion"],
    operation_id="analyse",
    # With a `user_id`, the answer's record is that user's: links to their history.
    responses={200: user_links("$request.body#/user_id", REPORT, EXPORT, UPDATE, ERASE)},
    dependencies=[Depends(require_scope(EMOTION_WRITE))],
)
async def emotion(
    body: EmotionRequest, request: Request, services: ServicesDep, caller: CallerDep
) -> EmotionResult:
    """Analyse one message; with a `user_id`, store it in that user's encrypted history."""
    if body.user_id is not None:
        await require_storing(request, services, body.user_id)  # history:write, per-user rate
    text = check_text(body.text, services.args.max_text_chars)
    result = await services.router.one(text, body.language, caller.client)
    if isinstance(result, ErrorBody):
        raise_error(result)
    _note_language(request, {str(result.language)})
    if body.user_id is not None:
        # Answered only after the commit: an acknowledged write is a stored write.
        record_id = await store_result(
            database_of(services),
            client=caller.client,
            user_id=body.user_id,
            text=body.text,
            result=result,
            metadata={"request_id": request.state.request_id},
        )
        result.stored, result.record_id = True, str(record_id)
    return result


@analysis.post(
    "/api/v1/emotion/batch",
    response_model=BatchResponse,
    tags=["emotion"],
    operation_id="analyse_batch",
    dependencies=[Depends(require_scope(EMOTION_WRITE, charged=False))],
)
async def emotion_batch(
    body: BatchRequest, request: Request, services: ServicesDep, caller: CallerDep
) -> BatchResponse:
    """Analyse up to `max_batch_texts` messages; answers in order, errors per item.
    Costs one unit of the key's rate per text (a batch refused for its size costs one)."""
    args, router = services.args, services.router
    too_many = len(body.texts) > args.max_batch_texts
    await charge_key(request, services, 1 if too_many else len(body.texts))
    if too_many:
        raise TooManyTextsError(
            f"{len(body.texts)} texts; the limit is {args.max_batch_texts}",
            limit=args.max_batch_texts,
        )
    results: list[BatchItem | None] = [None] * len(body.texts)
    valid: list[tuple[int, str]] = []
    for i, raw in enumerate(body.texts):
        try:
            valid.append((i, check_text(raw, args.max_text_chars)))
        except HappyKubeError as exc:
            results[i] = BatchItem(
                error=ErrorBody(code=exc.code, message=exc.message, details=exc.details)
            )
    if valid:
        items = await router.many([text for _, text in valid], body.language, caller.client)
        for (i, _), item in zip(valid, items, strict=True):
            if isinstance(item, ErrorBody):
                results[i] = BatchItem(error=item)
            else:
                results[i] = BatchItem(result=item)
    _note_language(request, {str(r.result.language) for r in results if r and r.result})
    return BatchResponse(results=[r for r in results if r is not None])


@analysis.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@analysis.get("/readyz", response_model=Readiness, tags=["health"])
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready only when every model deployment has answered."""
    try:
        models = await services.router.ready()
    except Exception:
        models = {name: False for name in services.args.models}
    reasons = [f"model {name} has not answered" for name, ok in models.items() if not ok]
    ready = not reasons
    status = "ready" if ready else "not_ready"
    if not await services.redis.probe():
        # Still serving (no cache, per-replica rate limits): degraded, not unready.
        status = "degraded" if ready else status
        reasons.append(services.redis.reason or "redis unavailable")
    state = Readiness(status=status, models=models, reasons=reasons)
    return JSONResponse(state.model_dump(mode="json"), status_code=200 if ready else 503)
