"""Rate limits on the real Redis: GCRA arithmetic, atomicity, headers, per key and per user."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

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
    """Two limiters (two replicas, two connections) race 60 requests at a quota of 10.

    Their links get a 5 s deadline, not the product's 0.25 s: what is tested is the script's
    atomicity across connections, and on a loaded CI machine a call past 0.25 s made both
    replicas fall back to counting in-process (20 allowed, 10 each; fresh-clone CI 12-04)."""
    links = [RedisLink(SHARED_REDIS, prefix=link.prefix, timeout_s=5.0) for _ in range(2)]
    try:
        replicas = [RateLimiter(r, ProtectionArgs(), PEPPER) for r in links]
        quota = Quota(limit=10, period_s=60)
        decisions = await asyncio.gather(*(replicas[i % 2].hit("race", quota) for i in range(60)))
        assert all(r.available for r in links)  # every answer came from Redis
        assert sum(d.allowed for d in decisions) == 10
    finally:
        for r in links:
            await r.close()


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


# --- Cost: a batch pays per text ------------------------------------------------------------


async def test_a_batch_costs_one_unit_per_text_and_waits_exactly_for_its_room(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    """Quota 10 a minute (one unit per 6 s): a batch of 8 leaves 2; a batch of 5 must wait
    until 3 more units are back (18 s), is not charged for being refused, and 2 singles fit."""
    app = real_app(served_graph, database, link, ProtectionArgs(key_rate_per_minute=10))
    key, _ = await new_key(database)
    async with client_for(app) as http:

        async def batch(n: int) -> httpx.Response:
            texts = [f"messaggio numero {i}" for i in range(n)]
            return await http.post(
                "/api/v1/emotion/batch", json={"texts": texts}, headers={HEADER: key}
            )

        first = await batch(8)
        assert first.status_code == 200 and len(first.json()["results"]) == 8
        assert first.headers["RateLimit-Remaining"] == "2"
        refused = await batch(5)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.json()["error"]["details"]["cost"] == 5
        assert 17 <= int(refused.headers["Retry-After"]) <= 18  # 3 units x 6 s
        assert refused.headers["RateLimit-Remaining"] == "2"  # the refusal took nothing
        singles = [
            await http.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: key})
            for _ in range(3)
        ]
        assert [r.status_code for r in singles] == [200, 200, 429]
        assert 5 <= int(singles[-1].headers["Retry-After"]) <= 6  # one unit


async def test_a_batch_larger_than_the_quota_itself_is_refused_as_never_fitting(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    """No wait would let 5 texts through a quota of 4 a minute: 422, not a 429 to retry."""
    app = real_app(served_graph, database, link)
    key, _ = await new_key(database, rate_limit=4)
    async with client_for(app) as http:
        texts = ["uno", "due", "tre", "quattro", "cinque"]
        r = await http.post("/api/v1/emotion/batch", json={"texts": texts}, headers={HEADER: key})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "batch_exceeds_rate"
        assert error["details"] == {"texts": 5, "limit": 4, "period_s": 60.0}
        assert "Retry-After" not in r.headers
        ok = await http.post(
            "/api/v1/emotion/batch", json={"texts": texts[:4]}, headers={HEADER: key}
        )
        assert ok.status_code == 200 and ok.headers["RateLimit-Remaining"] == "0"


# --- Requests without a valid key: limited per address, before the key store ---------------


class LookupCounter:
    """Counts the statements that read the API key table: the key store's work."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        self.engine = database.engine.sync_engine
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def client_at(app: FastAPI, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_flood_of_bad_keys_is_limited_per_address_before_the_key_store(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    protection = ProtectionArgs(address_rate_per_minute=5, key_cache_s=300)
    app = real_app(served_graph, database, link, protection)
    good, _ = await new_key(database)
    lookups = LookupCounter(database)
    try:
        async with (
            client_at(app, "203.0.113.7") as attacker,
            client_at(app, "198.51.100.2") as other,
        ):
            ok = await attacker.post(
                "/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: good}
            )
            assert ok.status_code == 200  # a good key, verified once: 1 lookup, 1 unit
            before = lookups.count
            codes = []
            for i in range(30):
                bad = {HEADER: f"hk_{i:043d}"}
                r = await attacker.post("/api/v1/emotion", json={"text": "ciao"}, headers=bad)
                codes.append(r.status_code)
            assert codes == [401] * 4 + [429] * 26
            assert lookups.count - before == 4  # the store was asked for the first 4 only
            flooded = await attacker.post("/api/v1/emotion", json={"text": "ciao"})
            assert flooded.status_code == 429  # a missing key counts as well
            assert flooded.json()["error"]["details"]["scope"] == "client address"
            assert 11 <= int(flooded.headers["Retry-After"]) <= 12  # one unit: 60/5 s
            # The key verified before is still served from the flooded address, unasked.
            again = await attacker.post(
                "/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: good}
            )
            assert again.status_code == 200 and lookups.count - before == 4
            # Another address has its own bucket: the store is asked for it.
            r = await other.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: "hk_x"})
            assert r.status_code == 401
        keys = [k async for k in link.client.scan_iter(match=link.prefix + "*")]
        assert not any(b"203.0.113.7" in k for k in keys)  # buckets are keyed hashes
    finally:
        lookups.close()


async def test_a_known_key_checked_again_costs_its_address_nothing(
    database: Database, link: RedisLink, served_graph: ServedGraph
) -> None:
    """With `key_cache_s` 0 the store is asked on every request of a key this replica knows;
    those checks are not charged to the address (behind an ingress controller every caller
    shares one): ten answers for one key on an address allowed five lookups a minute."""
    protection = ProtectionArgs(address_rate_per_minute=5, key_cache_s=0.0)
    app = real_app(served_graph, database, link, protection)
    good, _ = await new_key(database)
    async with client_at(app, f"203.0.113.{secrets.randbelow(200) + 20}") as caller:
        codes = [
            (
                await caller.post("/api/v1/emotion", json={"text": "ciao"}, headers={HEADER: good})
            ).status_code
            for _ in range(10)
        ]
    assert codes == [200] * 10
