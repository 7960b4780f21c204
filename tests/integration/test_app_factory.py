"""The app factory's configuration: CORS from the serve config's args, moved variables refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from db.session import Database
from serve_app.auth import HEADER
from serve_app.config import MOVED_TO_ARGS, AppArgs, ProtectionSettings
from serve_app.keys import EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE
from serve_app.redis_conn import RedisLink
from tests.integration.app_env import (
    ServedGraph,
    client_for,
    new_key,
    real_app,
    shared_link,
)


@pytest.fixture
async def link() -> AsyncIterator[RedisLink]:
    async with shared_link() as redis:
        yield redis


async def test_cors_origins_come_from_the_args(served_graph: ServedGraph, link: RedisLink) -> None:
    """A listed origin's preflight is allowed; any other origin gets no allow header."""
    app = real_app(served_graph, None, link, cors_origins=["https://app.example"])
    preflight = {"Access-Control-Request-Method": "POST"}
    async with client_for(app) as http:
        ok = await http.options(
            "/api/v1/emotion", headers={"Origin": "https://app.example", **preflight}
        )
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
        other = await http.options(
            "/api/v1/emotion", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("name", sorted(MOVED_TO_ARGS))
def test_a_moved_variable_is_refused_naming_its_new_place(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, "https://app.example")
    with pytest.raises(ValidationError, match=MOVED_TO_ARGS[name].split()[0]):
        ProtectionSettings()


def test_build_app_refuses_a_moved_variable(
    monkeypatch: pytest.MonkeyPatch, tiny_app_args: dict[str, object]
) -> None:
    from serve_app.app import build_app

    monkeypatch.setenv("HAPPYKUBE_CORS_ORIGINS", "https://app.example")
    with pytest.raises(ValueError, match=r"HAPPYKUBE_CORS_ORIGINS .* args\.cors_origins"):
        build_app(AppArgs.model_validate(tiny_app_args))


async def test_no_request_hops_to_a_worker_thread(
    served_graph: ServedGraph, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole history flow (analyse and store, report, export, settings, erase, health) runs
    on the event loop: FastAPI runs a plain `def` dependency or endpoint in its thread pool, two
    thread switches per request for a getter (14% of the ingress's Python time under load in
    a profile; BENCHMARKS.md)."""
    import anyio.to_thread
    from fastapi import Depends, FastAPI

    hops: list[str] = []
    original = anyio.to_thread.run_sync

    async def run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        inner = getattr(func, "func", func)  # Starlette wraps the call in a partial
        hops.append(getattr(inner, "__qualname__", repr(inner)))
        return await original(func, *args, **kwargs)

    # Every way Starlette and FastAPI reach the thread pool goes through anyio's run_sync.
    monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)
    control = FastAPI()

    def plain() -> int:
        return 1

    @control.get("/")
    async def route(value: int = Depends(plain)) -> int:
        return value

    async with client_for(control) as http:
        assert (await http.get("/")).status_code == 200
    assert hops == ["test_no_request_hops_to_a_worker_thread.<locals>.plain"]  # it would see one
    hops.clear()
    key, _ = await new_key(database, EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE)
    async with shared_link() as link, client_for(real_app(served_graph, database, link)) as http:
        http.headers[HEADER] = key
        user = f"u-{uuid.uuid4().hex[:8]}"
        answers = [
            await http.post("/api/v1/emotion", json={"text": "I am so happy", "user_id": user}),
            await http.post("/api/v1/emotion/batch", json={"texts": ["sono felice", "ok"]}),
            await http.get(f"/api/v1/users/{user}/report"),
            await http.get(f"/api/v1/users/{user}/export"),
            await http.patch(f"/api/v1/users/{user}", json={"timezone": "Europe/Rome"}),
            await http.delete(f"/api/v1/users/{user}"),
            await http.get("/healthz"),
            await http.get("/readyz"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 204, 200, 200], [
        a.text for a in answers
    ]
    assert hops == []
