"""One JSON error shape for every answer that is not a success.

`{"error": {"code", "message", "details"}, "request_id"}`, with a stable `code`: our named
errors (serve_app/errors.py) carry theirs; schema problems are `invalid_request` (422, the
offending input never echoed); anything unexpected is logged with the request id and the
route template and answered 500 without internals.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from serve_app.errors import HappyKubeError
from serve_app.observability import get_logger
from serve_app.observability import request_id as serve_request_id
from serve_app.schemas import ErrorBody, ErrorResponse

log = get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


def route_template(request: Request) -> str:
    """The matched route's template (`/api/v1/users/{user_id}`), never the raw path."""
    route = request.scope.get("route")
    if route is None:  # refused before routing (413), or no route at all (404)
        for candidate in request.app.router.routes:
            if candidate.matches(request.scope)[0] is not Match.NONE:
                route = candidate
                break
    return str(getattr(route, "path", "unmatched"))


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
        response = error_response(request, 500, body)
        request_id = getattr(request.state, "request_id", None)
        if request_id and serve_request_id() == "-":
            # This answer is sent by Starlette's outermost middleware, outside `RequestId`;
            # in Serve the proxy names it, elsewhere it is named here.
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
