"""The prediction cache on the real Redis; and, through Ray Serve, that a hit runs no model."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from db.session import Database
from serve_app.auth import HEADER
from serve_app.cache import PredictionCache, Scores, cache_from_settings
from serve_app.config import ProtectionArgs, ProtectionSettings
from serve_app.redis_conn import RedisLink
from tests.integration import app_env
from tests.integration.app_env import PEPPER, SHARED_REDIS, shared_link, test_prefix
from tests.redis_server import RedisServer


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
    key = cache.key("it_emotion", "rev1", "sono felice", client="bot")
    assert key.startswith(link.prefix + "pc:")
    assert "felice" not in key and "it_emotion" not in key and "rev1" not in key
    assert "bot" not in key.removeprefix(link.prefix)
    assert key == cache.key("it_emotion", "rev1", "sono felice", client="bot")
    others = {
        cache.key("it_emotion", "rev2", "sono felice", client="bot"),
        cache.key("en_emotion", "rev1", "sono felice", client="bot"),
        cache.key("it_emotion", "rev1", "sono felici", client="bot"),
        cache.key("it_emotion", "rev1", "sono felice", client="web"),
        PredictionCache(link, b"another secret", 60).key(
            "it_emotion", "rev1", "sono felice", client="bot"
        ),
    }
    assert key not in others and len(others) == 5


async def test_a_hit_skips_the_model_and_only_labels_and_scores_are_stored(
    link: RedisLink,
) -> None:
    cache = PredictionCache(link, PEPPER, ttl_s=120)
    model = Model()
    first = await cache.through("it_emotion", "rev1", ["ciao", "sono triste"], model, client="bot")
    assert model.seen == ["ciao", "sono triste"]
    second = await cache.through(
        "it_emotion", "rev1", ["sono triste", "nuovo", "ciao"], model, client="bot"
    )
    assert model.seen == ["ciao", "sono triste", "nuovo"]  # only the new text ran
    assert second == [first[1], {"joy": 0.05, "anger": 0.5}, first[0]]
    assert cache.stats["hits"] == 2 and cache.stats["misses"] == 3
    shared = await link.client.hgetall(link.key("cache", "stats"))
    assert shared == {b"hits": b"2", b"misses": b"3"}
    stored_key = cache.key("it_emotion", "rev1", "ciao", client="bot")
    assert json.loads(await link.client.get(stored_key)) == first[0]
    assert 110 <= await link.client.ttl(stored_key) <= 120
    # Another revision is another model: no stale answers after a checkpoint update.
    await cache.through("it_emotion", "rev2", ["ciao"], model, client="bot")
    assert model.seen[-1] == "ciao"


async def test_clients_never_share_an_entry(link: RedisLink) -> None:
    """One client's cached text is a miss for another: no hit reveals what another wrote."""
    cache = PredictionCache(link, PEPPER, ttl_s=60)
    model = Model()
    await cache.through("it_emotion", "rev1", ["ti amo"], model, client="bot")
    await cache.through("it_emotion", "rev1", ["ti amo"], model, client="web")
    await cache.through("it_emotion", "rev1", ["ti amo"], model, client="bot")
    assert model.seen == ["ti amo", "ti amo"]
    assert cache.stats["hits"] == 1 and cache.stats["misses"] == 2


async def test_the_ttl_comes_from_the_args_and_is_bounded() -> None:
    protection = ProtectionArgs(cache_ttl_s=3600)
    settings = ProtectionSettings(REDIS_URL=SHARED_REDIS)  # type: ignore[call-arg]
    cache = cache_from_settings(settings, protection)
    assert cache.ttl_s == 3600
    await cache.link.close()
    assert ProtectionArgs().cache_ttl_s == 86_400
    for bad in (0, 7 * 86_400 + 1):
        with pytest.raises(ValidationError, match="cache_ttl_s"):
            ProtectionArgs(cache_ttl_s=bad)


async def test_a_corrupt_value_is_a_miss(link: RedisLink) -> None:
    cache = PredictionCache(link, PEPPER, ttl_s=60)
    model = Model()
    for bad in (b"not json", b"[1, 2]", b'{"joy": "high"}', b"{}", b'{"joy": NaN}'):
        await link.client.set(cache.key("m", "r", "x", client="c"), bad)
        assert await cache.through("m", "r", ["x"], model, client="c") == [
            {"joy": 0.01, "anger": 0.5}
        ]
    assert model.seen == ["x"] * 5


async def test_redis_unreachable_means_every_text_is_computed() -> None:
    dead = RedisLink("redis://127.0.0.1:1/0", prefix=test_prefix(), timeout_s=0.1)
    try:
        cache = PredictionCache(dead, PEPPER, ttl_s=60)
        model = Model()
        for _ in range(2):
            assert await cache.through("m", "r", ["a", "b"], model, client="c") == [
                {"joy": 0.01, "anger": 0.5},
                {"joy": 0.01, "anger": 0.5},
            ]
        assert model.seen == ["a", "b", "a", "b"] and cache.stats["unavailable"] >= 2
    finally:
        await dead.close()


# --- A flood of distinct texts stays within the cache Redis's memory bound -------------------

FLOOD_TEXTS = 50_000
FLOOD_BATCH = 250
FLOOD_MAXMEMORY = 8 * 2**20  # --maxmemory 8mb, the production policy (kuberay/base/redis.yaml)


@pytest.fixture
def bounded_redis() -> Iterator[RedisServer]:
    server = RedisServer(args=["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _memory(link: RedisLink) -> tuple[int, int, int]:
    """(used_memory, maxmemory, evicted_keys) as `INFO` reports them."""
    memory = await link.client.info("memory")
    stats = await link.client.info("stats")
    return int(memory["used_memory"]), int(memory["maxmemory"]), int(stats["evicted_keys"])


async def test_a_flood_of_distinct_texts_stays_under_maxmemory(
    bounded_redis: RedisServer,
) -> None:
    """50,000 new texts (about twice what fits) through the real cache: Redis evicts the
    least recently used entries, never grows past `maxmemory`, and keeps answering."""
    link = RedisLink(bounded_redis.url, prefix=test_prefix(), timeout_s=2.0)
    try:
        cache = PredictionCache(link, PEPPER, ttl_s=ProtectionArgs().cache_ttl_s)
        model = Model()
        peak, began = 0, time.monotonic()
        for start in range(0, FLOOD_TEXTS, FLOOD_BATCH):
            texts = [f"messaggio di prova numero {i}" for i in range(start, start + FLOOD_BATCH)]
            await cache.through("it_emotion", "rev1", texts, model, client="flood")
            used, maxmemory, _ = await _memory(link)
            peak = max(peak, used)
            assert used <= maxmemory == FLOOD_MAXMEMORY
        used, _, evicted = await _memory(link)
        kept = await link.client.dbsize()
        print(
            f"\ncache flood: texts={FLOOD_TEXTS} maxmemory={FLOOD_MAXMEMORY}"
            f" peak_used_memory={peak} final_used_memory={used} evicted_keys={evicted}"
            f" keys_kept={kept} seconds={time.monotonic() - began:.1f}"
        )
        assert len(model.seen) == FLOOD_TEXTS  # every text was new: all misses, all written
        assert evicted > 0 and 0 < kept < FLOOD_TEXTS
        # Still a working cache: the latest texts are hits, a new one is computed and kept.
        last = texts[-10:]
        assert await cache.through("it_emotion", "rev1", last, model, client="flood")
        assert len(model.seen) == FLOOD_TEXTS
        await cache.through("it_emotion", "rev1", ["dopo il diluvio"], model, client="flood")
        await cache.through("it_emotion", "rev1", ["dopo il diluvio"], model, client="flood")
        assert model.seen[FLOOD_TEXTS:] == ["dopo il diluvio"]
        assert cache.stats["unavailable"] == 0  # no write was refused for memory (OOM)
    finally:
        await link.close()


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


async def test_two_clients_sending_one_text_get_separate_entries(
    database: Database, served_graph: app_env.ServedGraph, app_redis_url: str
) -> None:
    """The ingress passes the caller to the served router, whose cache keys by it."""
    text = "Oggi mi sento davvero felice perché ho rivisto una vecchia amica " + uuid.uuid4().hex
    first, _ = await app_env.new_key(database)
    second, _ = await app_env.new_key(database)
    store = aioredis.Redis.from_url(app_redis_url)
    async with shared_link() as link:
        http = app_env.client_for(app_env.real_app(served_graph, database, link))

        async def entries_after(key: str) -> int:
            r = await http.post("/api/v1/emotion", json={"text": text}, headers={HEADER: key})
            assert r.status_code == 200, r.text
            return len([k async for k in store.scan_iter(match="*pc:*", count=1000)])

        try:
            before = len([k async for k in store.scan_iter(match="*pc:*", count=1000)])
            after_first = await entries_after(first)
            assert after_first > before  # the first client's entries
            assert await entries_after(first) == after_first  # a hit: nothing new
            assert await entries_after(second) == 2 * after_first - before  # its own entries
        finally:
            await http.aclose()
            await store.aclose()
