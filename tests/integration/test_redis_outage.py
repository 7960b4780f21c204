"""Redis killed mid-test and started again: answers go on, limits fall back, recovery is automatic.

Every test here kills a private `redis-server` (tests/redis_server.py), never the shared
one on 6379. The in-process tests use their own; the served test stops the app's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from db.session import Database
from serve_app.auth import HEADER
from serve_app.cache import PredictionCache, Scores
from serve_app.config import ProtectionArgs
from serve_app.ratelimit import Quota, RateLimiter
from serve_app.redis_conn import RedisLink
from tests.integration.app_env import PEPPER, ServedGraph, new_key, real_app
from tests.redis_server import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    redis = RedisServer()
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
async def link(server: RedisServer) -> AsyncIterator[RedisLink]:
    redis = RedisLink(server.url, prefix="hk-outage:", timeout_s=0.2, cool_off_s=0.5)
    yield redis
    await redis.close()


async def model(texts: list[str]) -> list[Scores]:
    return [{"joy": 0.9, "sadness": 0.1} for _ in texts]


async def recovered(link: RedisLink, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await link.probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"redis did not come back: {link.reason}")


async def test_limits_and_cache_survive_a_redis_crash_and_recover(
    server: RedisServer, link: RedisLink
) -> None:
    limiter = RateLimiter(link, ProtectionArgs(), PEPPER)
    cache = PredictionCache(link, PEPPER, ttl_s=60)
    quota = Quota(limit=3, period_s=60)
    assert (await limiter.hit("k", quota)).allowed
    assert await cache.through("m", "r", ["ciao"], model, client="c") == [
        {"joy": 0.9, "sadness": 0.1}
    ]
    assert await link.client.exists(link.key("rl", "k"))

    server.stop()
    started = time.monotonic()
    local = [(await limiter.hit("k", quota)).allowed for _ in range(4)]
    answers = [await cache.through("m", "r", ["ciao"], model, client="c") for _ in range(20)]
    elapsed = time.monotonic() - started
    assert local == [True, True, True, False]  # the per-replica fallback still limits
    assert answers == [[{"joy": 0.9, "sadness": 0.1}]] * 20  # answered without the cache
    assert elapsed < 1.5, f"an outage must not slow every call down ({elapsed:.2f}s)"
    assert not link.available and link.reason == "redis unavailable: ConnectionError"
    assert not await link.probe()

    server.start()  # empty: a crash loses the cache, which is only a cache
    await recovered(link)
    assert link.available and link.reason is None
    assert (await limiter.hit("after", quota)).allowed
    assert await link.client.exists(link.key("rl", "after"))  # counted in Redis again
    await cache.through("m", "r", ["ciao"], model, client="c")
    assert cache.stats["unavailable"] >= 20


async def test_a_paused_redis_times_out_quickly(server: RedisServer, link: RedisLink) -> None:
    """A hung Redis (SIGSTOP) is as good as a dead one after one short timeout."""
    assert server.process is not None
    limiter = RateLimiter(link, ProtectionArgs(), PEPPER)
    server.process.send_signal(19)  # SIGSTOP
    try:
        started = time.monotonic()
        decisions = [await limiter.hit("k", Quota(2)) for _ in range(3)]
        assert time.monotonic() - started < 1.0
        assert [d.allowed for d in decisions] == [True, True, False]
        assert link.reason is not None and "Timeout" in link.reason
    finally:
        server.process.send_signal(18)  # SIGCONT
    await recovered(link)


async def test_http_answers_through_an_outage(
    server: RedisServer, link: RedisLink, database: Database, served_graph: ServedGraph
) -> None:
    key, _ = await new_key(database)
    app = real_app(served_graph, database, link, ProtectionArgs(key_rate_per_minute=5))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

        async def call() -> httpx.Response:
            return await http.post("/api/v1/emotion", json={"text": "c"}, headers={HEADER: key})

        assert (await call()).headers["RateLimit-Remaining"] == "4"
        server.stop()
        codes = [(await call()).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]  # a fresh local bucket: 5, then limited
        server.start()
        await recovered(link)
        r = await call()
        assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "4"  # Redis again


# --- Through Ray Serve: the app's own Redis is killed and restarted ------------------------


def test_served_app_degrades_and_recovers(
    serve_url: str, app_redis: RedisServer, api_headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=serve_url, headers=api_headers, timeout=30) as http:
        assert http.get("/readyz").json()["status"] == "ready"
        app_redis.stop()
        try:
            text = {"text": "Oggi sono un po' triste, piove da giorni"}
            for _ in range(3):
                r = http.post("/api/v1/emotion", json=text)
                assert r.status_code == 200, r.text
                assert r.headers["RateLimit-Limit"]  # the in-process limiter answered
            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert any("redis unavailable" in reason for reason in ready.json()["reasons"])
        finally:
            app_redis.start()
        deadline = time.monotonic() + 15
        while http.get("/readyz").json()["status"] != "ready":
            assert time.monotonic() < deadline, "the app did not notice Redis was back"
            time.sleep(0.3)
        assert http.post("/api/v1/emotion", json=text).status_code == 200
