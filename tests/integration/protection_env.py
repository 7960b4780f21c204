"""The protection dependencies on a small in-process FastAPI app, over real Redis and PostgreSQL.

The app mounts the real users router and an `/api/v1/emotion` stand-in guarded exactly as
the ingress guards its route (the ingress itself needs Ray; tests/integration/
test_serve_app.py and test_redis_outage.py check the same wiring through Ray Serve).
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI, Request, Response

from db.session import Database
from serve_app.auth import (
    EMOTION_WRITE,
    KeyVerifier,
    create_key,
    require_history_access,
    require_scope,
    require_storing,
)
from serve_app.config import ProtectionArgs
from serve_app.ingress import install_error_handlers
from serve_app.ratelimit import RateLimiter, RateLimitHeaders
from serve_app.redis_conn import RedisLink
from serve_app.schemas import EmotionRequest
from serve_app.users import router as users_router

SHARED_REDIS = os.environ.get("HAPPYKUBE_TEST_REDIS", "redis://127.0.0.1:6379/0")
PEPPER = secrets.token_bytes(32)


def test_prefix() -> str:
    """A Redis key prefix of its own, so runs sharing the Redis on 6379 never meet."""
    return f"hk-test-{uuid.uuid4().hex[:12]}:"


test_prefix.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


async def drop_prefix(link: RedisLink) -> None:
    keys = [key async for key in link.client.scan_iter(match=link.prefix + "*")]
    if keys:
        await link.client.delete(*keys)


@asynccontextmanager
async def shared_link() -> AsyncIterator[RedisLink]:
    """A link to the shared Redis under a fresh prefix, whose keys are dropped afterwards."""
    link = RedisLink(SHARED_REDIS, prefix=test_prefix())
    try:
        yield link
    finally:
        await drop_prefix(link)
        await link.close()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def protected_app(
    database: Database | None,
    link: RedisLink,
    args: ProtectionArgs | None = None,
    bootstrap_key: str | None = None,
) -> FastAPI:
    args = args or ProtectionArgs()
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)
    app.state.database = database
    app.state.keys = KeyVerifier(PEPPER, cache_s=args.key_cache_s, bootstrap_key=bootstrap_key)
    app.state.limiter = RateLimiter(link, args, PEPPER)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = "test-request"
        return await call_next(request)

    @app.post("/api/v1/emotion", dependencies=[Depends(require_scope(EMOTION_WRITE))])
    async def emotion(body: EmotionRequest, request: Request) -> dict[str, str]:
        if body.user_id is not None:
            await require_storing(request, body.user_id)
        return {"caller": request.state.caller}

    app.include_router(users_router, dependencies=[Depends(require_history_access)])
    return app


async def new_key(
    database: Database, *scopes: str, rate_limit: int | None = None
) -> tuple[str, str]:
    """Create a key straight in the database; return (key, key id)."""
    async with database.session() as session:
        key, row = await create_key(
            session,
            pepper=PEPPER,
            name="test",
            scopes=list(scopes) or [EMOTION_WRITE],
            actor="cli:test",
            rate_limit=rate_limit,
        )
        return key, str(row.id)
