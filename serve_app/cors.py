"""CORS from `HAPPYKUBE_CORS_ORIGINS`: browsers may call only from the origins listed there.

None are listed by default, and then no CORS header is ever sent, so a browser page on
another origin cannot read an answer. The origins are read when the deployment starts (the
ingress puts them on `app.state.cors_origins`), not at import: the FastAPI app is built at
import time in every process that imports the module.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.auth import HEADER


class ConfiguredCors:
    """Starlette's CORS middleware over the origins on `app.state`, or nothing when none."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None
        self._origins: list[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origins: list[str] = list(getattr(scope["app"].state, "cors_origins", None) or [])
        if scope["type"] != "http" or not origins:
            await self.app(scope, receive, send)
            return
        if self._cors is None or origins != self._origins:
            self._origins = origins
            self._cors = CORSMiddleware(
                self.app,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=[HEADER, "Content-Type", "X-Request-ID"],
                expose_headers=[
                    "X-Request-ID",
                    "Retry-After",
                    "RateLimit-Limit",
                    "RateLimit-Remaining",
                    "RateLimit-Reset",
                    "RateLimit-Policy",
                ],
                max_age=600,
            )
        await self._cors(scope, receive, send)
