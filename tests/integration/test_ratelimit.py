"""Rate limits on the real Redis: GCRA arithmetic, atomicity, headers, per key and per user."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from db.session import Database
from serve_app.auth import HEADER
from serve_app.config import ProtectionArgs
from serve_app.ratelimit import Quota, RateLimiter
from serve_app.redis_conn import RedisLink
from tests.integration.app_env import (
    PEPPER,
    SHARED_REDIS,
    ServedGraph,
    client_for,
    new_key,
    real_app,
    shared_link,
    test_prefix,
)


@pytest.fixture
async def link() -> AsyncIterator[RedisLink]:
    async with shared_link() as redis:
        yield redis


async def test_gcra_allows_the_burst_then_spaces_requests(link: RedisLink) -> None:
    limiter = RateLimiter(link, ProtectionArgs(), PEPPER)
    quota = Quota(limit=5, period_s=60)
    decisions = [await limiter.hit("k", quota) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    denied = decisions[-1].headers()
    assert denied["RateLimit-Limit"] == "5" and denied["RateLimit-Policy"] == "5;w=60"
    assert 11 <= int(denied["Retry-After"]) <= 12  # one interval (60/5 s) to the next slot
    assert 59 <= int(denied["RateLimit-Reset"]) <= 60
    assert await link.client.pttl(link.key("rl", "k")) > 55_000  # expires once full again


async def test_bucket_refills_at_the_quota_rate(link: RedisLink) -> None:
    limiter = RateLimiter(link, ProtectionArgs(), PEPPER)
    quota = Quota(limit=2, period_s=0.6)
    assert [(await limiter.hit("r", quota)).allowed for _ in range(3)] == [True, True, False]
    await asyncio.sleep(0.35)  # a little over one interval (0.3 s): one slot back
    assert [(await limiter.hit("r", quota)).allowed for _ in range(2)] == [True, False]


async def test_concurrent_replicas_never_share_out_more_than_the_quota(link: RedisLink) -> None:
    """Two limiters (two replicas, two connections) race 60 requests at a quota of 10."""
    other = RedisLink(SHARED_REDIS, prefix=link.prefix)
    try:
        replicas = [RateLimiter(r, ProtectionArgs(), PEPPER) for r in (link, other)]
        quota = Quota(limit=10, period_s=60)
        decisions = await asyncio.gather(*(replicas[i % 2].hit("race", quota) for i in range(60)))
        assert sum(d.allowed for d in decisions) == 10
    finally:
        await other.close()


async def test_http_429_with_headers_per_key(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    app = real_app(served_graph, database, link, ProtectionArgs(key_rate_per_minute=3))
    key, _ = await new_key(database)
    other, _ = await new_key(database)
    own_limit, _ = await new_key(database, rate_limit=1)
    async with client_for(app) as http:
        remaining = []
        for _ in range(3):
            r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: key})
            assert r.status_code == 200
            remaining.append(r.headers["RateLimit-Remaining"])
            assert r.headers["RateLimit-Limit"] == "3"
        assert remaining == ["2", "1", "0"]
        r = await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: key})
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limited"
        assert r.json()["error"]["details"]["scope"] == "API key"
        assert int(r.headers["Retry-After"]) >= 1 and r.headers["RateLimit-Remaining"] == "0"
        # Another key has its own bucket; a key's own limit overrides the default.
        other_r = await http.post("/api/v1/emotion", json={"text": "c"}, headers={HEADER: other})
        assert other_r.status_code == 200
        codes = [
            (
                await http.post("/api/v1/emotion", json={"text": "c"}, headers={HEADER: own_limit})
            ).status_code
            for _ in range(2)
        ]
        assert codes == [200, 429]


async def test_per_user_limit_is_separate_and_keeps_no_raw_id(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    app = real_app(served_graph, database, link, ProtectionArgs(user_rate_per_minute=2))
    key, _ = await new_key(database, "emotion:write", "history:write")
    user = "123456789"
    async with client_for(app) as http:

        async def send(user_id: str) -> httpx.Response:
            body = {"text": "ciao", "user_id": user_id}
            return await http.post("/api/v1/emotion", json=body, headers={HEADER: key})

        assert [(await send(user)).status_code for _ in range(3)] == [200, 200, 429]
        r = await send(user)
        assert r.json()["error"]["details"]["scope"] == "user"
        assert (await send("987654321")).status_code == 200  # another person is not slowed
        plain = await http.post("/api/v1/emotion", json={"text": "c"}, headers={HEADER: key})
        assert plain.status_code == 200  # nor is the key's analysis without a user
        assert plain.headers["RateLimit-Limit"] == "100"
    keys = [k async for k in link.client.scan_iter(match=link.prefix + "*")]
    assert keys and not any(user.encode() in k for k in keys)


async def test_in_process_fallback_enforces_when_redis_is_unreachable() -> None:
    dead = RedisLink("redis://127.0.0.1:1/0", prefix=test_prefix(), timeout_s=0.1)
    try:
        limiter = RateLimiter(dead, ProtectionArgs(), PEPPER)
        quota = Quota(limit=3, period_s=60)
        start = time.monotonic()
        decisions = [await limiter.hit("k", quota) for _ in range(4)]
        assert time.monotonic() - start < 1.0  # one failed connect, then the cool-off
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert not dead.available and dead.reason and "redis unavailable" in dead.reason
    finally:
        await dead.close()
