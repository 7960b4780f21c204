"""The real HTTP app (`serve_app.api.create_app`) in-process, over real Redis and PostgreSQL.

The language router and its model deployments run in Serve's local testing mode over the
session's tiny generated checkpoints (the `local_router` fixture), so a request goes through
the same routes, guards, gathering, router and classifiers as in the served app, without a
Ray cluster; tests/integration/test_serve_app.py and test_redis_outage.py drive the served
app where Ray matters.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from ray.serve.handle import DeploymentHandle

from db.session import Database
from serve_app.api import create_app
from serve_app.auth import HEADER, KeyVerifier
from serve_app.config import AppArgs, ProtectionArgs
from serve_app.deps import Services
from serve_app.gather import RouterClient
from serve_app.keys import EMOTION_WRITE, create_key
from serve_app.ratelimit import RateLimiter
from serve_app.redis_conn import RedisLink

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


@dataclass(frozen=True)
class ServedGraph:
    """The served application's language router (over Ray) and the args it was built with."""

    router: DeploymentHandle[Any]
    args: AppArgs


def real_app(
    graph: ServedGraph,
    database: Database | None,
    link: RedisLink,
    args: ProtectionArgs | None = None,
    bootstrap_key: str | None = None,
    *,
    pepper: bytes = PEPPER,
    keys: KeyVerifier | None = None,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The app the ingress serves, with these collaborators (keys under `pepper`)."""
    protection = args or ProtectionArgs()
    router = graph.router
    update: dict[str, Any] = {"protection": protection}
    if cors_origins is not None:
        update["cors_origins"] = cors_origins
    full = graph.args.model_copy(update=update)
    services = Services(
        args=full,
        keys=keys
        or KeyVerifier(
            pepper,
            cache_s=protection.key_cache_s,
            grace_s=protection.key_grace_s,
            bootstrap_key=bootstrap_key,
        ),
        limiter=RateLimiter(link, protection, PEPPER),
        redis=link,
        router=RouterClient(router, max_texts=full.gather.max_texts, wait_s=full.gather.wait_s),
        database=database,
    )
    return create_app(services)


async def new_key(
    database: Database, *scopes: str, rate_limit: int | None = None, client: str | None = None
) -> tuple[str, str]:
    """Create a key straight in the database; return (key, key id). Without `client`, the
    key is the only one of a client of its own."""
    async with database.session() as session:
        key, row = await create_key(
            session,
            pepper=PEPPER,
            client=client or f"test-{uuid.uuid4().hex[:12]}",
            name="test",
            scopes=list(scopes) or [EMOTION_WRITE],
            actor="cli:test",
            rate_limit=rate_limit,
        )
        return key, str(row.id)


@dataclass
class Callers:
    """API keys by name, each of a client of its own (`history:read` and `history:write`)."""

    database: Database
    clients: dict[str, str]
    keys: dict[str, str]

    async def add(self, name: str) -> str:
        """The client (the owner of what is stored with its key) of `name`, made on first use."""
        if name not in self.clients:
            self.clients[name] = f"test-{name}-{uuid.uuid4().hex[:12]}"
            self.keys[name], _ = await new_key(
                self.database, "history:read", "history:write", client=self.clients[name]
            )
        return self.clients[name]

    def headers(self, name: str) -> dict[str, str]:
        return {HEADER: self.keys[name]}


@asynccontextmanager
async def history_client(
    graph: ServedGraph, database: Database, caller: str = "me"
) -> AsyncIterator[tuple[httpx.AsyncClient, Callers]]:
    """A client of the real app acting as `caller` (its key sent by default), and the callers."""
    callers = Callers(database, {}, {})
    await callers.add(caller)
    async with shared_link() as link, client_for(real_app(graph, database, link)) as http:
        http.headers.update(callers.headers(caller))
        yield http, callers
