"""The app factory's configuration: CORS from the serve config's args, moved variables refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from serve_app.config import MOVED_TO_ARGS, AppArgs, ProtectionSettings
from serve_app.redis_conn import RedisLink
from tests.integration.app_env import ServedGraph, client_for, real_app, shared_link


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
