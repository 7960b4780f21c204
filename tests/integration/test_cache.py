"""The prediction cache on the real Redis; and, through Ray Serve, that a hit runs no model."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from serve_app.cache import PredictionCache, Scores
from serve_app.redis_conn import RedisLink
from tests.integration.app_env import PEPPER, shared_link, test_prefix


@pytest.fixture
async def link() -> AsyncIterator[RedisLink]:
    async with shared_link() as redis:
        yield redis


class Model:
    """Counts what reaches it: the test's stand-in for a model deployment's `classify`."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, texts: list[str]) -> list[Scores]:
        self.seen.extend(texts)
        return [{"joy": round(len(t) / 100, 4), "anger": 0.5} for t in texts]


async def test_key_is_keyed_and_reveals_nothing(link: RedisLink) -> None:
    cache = PredictionCache(link, PEPPER, ttl_s=60)
    key = cache.key("it_emotion", "rev1", "sono felice")
    assert key.startswith(link.prefix + "pc:")
    assert "felice" not in key and "it_emotion" not in key and "rev1" not in key
    assert key == cache.key("it_emotion", "rev1", "sono felice")
    others = {
        cache.key("it_emotion", "rev2", "sono felice"),
        cache.key("en_emotion", "rev1", "sono felice"),
        cache.key("it_emotion", "rev1", "sono felici"),
        PredictionCache(link, b"another secret", 60).key("it_emotion", "rev1", "sono felice"),
    }
    assert key not in others and len(others) == 4


async def test_a_hit_skips_the_model_and_only_labels_and_scores_are_stored(
    link: RedisLink,
) -> None:
    cache = PredictionCache(link, PEPPER, ttl_s=120)
    model = Model()
    first = await cache.through("it_emotion", "rev1", ["ciao", "sono triste"], model)
    assert model.seen == ["ciao", "sono triste"]
    second = await cache.through("it_emotion", "rev1", ["sono triste", "nuovo", "ciao"], model)
    assert model.seen == ["ciao", "sono triste", "nuovo"]  # only the new text ran
    assert second == [first[1], {"joy": 0.05, "anger": 0.5}, first[0]]
    assert cache.stats["hits"] == 2 and cache.stats["misses"] == 3
    shared = await link.client.hgetall(link.key("cache", "stats"))
    assert shared == {b"hits": b"2", b"misses": b"3"}
    stored_key = cache.key("it_emotion", "rev1", "ciao")
    assert json.loads(await link.client.get(stored_key)) == first[0]
    assert 110 <= await link.client.ttl(stored_key) <= 120
    # Another revision is another model: no stale answers after a checkpoint update.
    await cache.through("it_emotion", "rev2", ["ciao"], model)
    assert model.seen[-1] == "ciao"


async def test_a_corrupt_value_is_a_miss(link: RedisLink) -> None:
    cache = PredictionCache(link, PEPPER, ttl_s=60)
    model = Model()
    for bad in (b"not json", b"[1, 2]", b'{"joy": "high"}', b"{}", b'{"joy": NaN}'):
        await link.client.set(cache.key("m", "r", "x"), bad)
        assert await cache.through("m", "r", ["x"], model) == [{"joy": 0.01, "anger": 0.5}]
    assert model.seen == ["x"] * 5


async def test_redis_unreachable_means_every_text_is_computed() -> None:
    dead = RedisLink("redis://127.0.0.1:1/0", prefix=test_prefix(), timeout_s=0.1)
    try:
        cache = PredictionCache(dead, PEPPER, ttl_s=60)
        model = Model()
        for _ in range(2):
            assert await cache.through("m", "r", ["a", "b"], model) == [
                {"joy": 0.01, "anger": 0.5},
                {"joy": 0.01, "anger": 0.5},
            ]
        assert model.seen == ["a", "b", "a", "b"] and cache.stats["unavailable"] >= 2
    finally:
        await dead.close()


# --- Through Ray Serve: the router reads through the cache around every model call --------


def test_served_hit_comes_from_the_cache_not_the_model(
    serve_url: str, app_redis_url: str, api_headers: dict[str, str]
) -> None:
    """Plant scores no tiny random model could produce; the answer must carry them."""
    text = "Che giornata strana, non so cosa pensare davvero"
    with httpx.Client(base_url=serve_url, headers=api_headers, timeout=30) as http:
        first = http.post("/api/v1/emotion", json={"text": text})
        assert first.status_code == 200, first.text
        store = redis.Redis.from_url(app_redis_url)
        try:
            planted = 0
            # The write follows the answer; after a Redis outage (test_redis_outage) the
            # router's link may still be cooling off: ask again until the entry is there.
            deadline = time.monotonic() + 20
            while not planted and time.monotonic() < deadline:
                for key in store.keys("*pc:*"):
                    labels = json.loads(store.get(key) or b"{}")
                    if "joy" in labels:  # the it_emotion entry
                        store.set(key, json.dumps({**dict.fromkeys(labels, 0.0), "joy": 1.0}))
                        planted += 1
                if not planted:
                    time.sleep(1)
                    assert http.post("/api/v1/emotion", json={"text": text}).status_code == 200
            assert planted >= 1
            second = http.post("/api/v1/emotion", json={"text": text}).json()
            assert second["emotion"] == "joy" and second["emotion_scores"]["joy"] == 1.0
            stats = store.hgetall(next(iter(store.keys("*cache:stats"))))
            assert int(stats[b"hits"]) >= 2  # emotion and sentiment of the second call
            assert all(text.encode() not in key for key in store.keys("*"))
        finally:
            store.close()
