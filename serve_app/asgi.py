"""The shape of the ingress's plain ASGI middlewares: HTTP requests handled, the rest passed."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware:
    """A plain ASGI middleware that acts on HTTP requests only; override `http`.

    Plain ASGI rather than `@app.middleware("http")` (Starlette's BaseHTTPMiddleware): no
    extra task and stream per request, and a caller who hangs up is no error of ours.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
