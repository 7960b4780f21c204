"""The prediction cache: one model's scores for one normalised text of one client.

Key: `<prefix>pc:` + HMAC-SHA256(secret, client, model, revision, normalised text). Keyed,
so the key reveals nothing about the text even to someone who can list Redis and guess
messages; the client is in it, so no client can learn from a hit what another one sent;
the revision is in it, so a new checkpoint never answers with an old one's scores. Value:
the `{label: score}` JSON of that model, nothing else. TTL: `cache_ttl_s` (at most a week).
Memory is bounded by the cache Redis itself (`--maxmemory` with `allkeys-lru`,
kuberay/base/redis.yaml): every distinct text is a new key, so it evicts the least recently
used entries rather than grow (tests/integration/test_cache.py floods it with 50,000).

The router reads through it around each model call (`through`): the texts found are not sent
to the model at all, which is what makes a hit cheap. Hits and misses are counted in this
process (`stats`), in Redis (`<prefix>cache:stats`, shared by every replica) and in the
`happykube_cache_lookups` metric (result hit, miss or error). When Redis is unavailable every
text is a miss and nothing is written: answers are the same, slower.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from serve_app.observability import get_logger, replica_metrics
from serve_app.redis_conn import RedisLink, RedisUnavailableError

if TYPE_CHECKING:
    from serve_app.config import ProtectionArgs, ProtectionSettings

log = get_logger(__name__)

Scores = dict[str, float]


class PredictionCache:
    """Read-through cache of per-model scores, keyed by a keyed hash of the input."""

    def __init__(self, link: RedisLink, secret: bytes, ttl_s: int) -> None:
        self.link = link
        self.ttl_s = ttl_s
        self._secret = hmac.new(secret, b"happykube-prediction-cache", hashlib.sha256).digest()
        self.stats: Counter[str] = Counter()  # hits, misses, unavailable
        self.metrics = replica_metrics()  # built in the router replica's constructor

    def key(self, model: str, revision: str, text: str, *, client: str) -> str:
        message = "\0".join((client, model, revision, text)).encode("utf-8")
        return self.link.key("pc", hmac.new(self._secret, message, hashlib.sha256).hexdigest())

    async def through(
        self,
        model: str,
        revision: str,
        texts: Sequence[str],
        compute: Callable[[list[str]], Awaitable[list[Scores]]],
        *,
        client: str,
    ) -> list[Scores]:
        """Scores for `client`'s `texts`: cached ones from Redis, the rest from `compute`,
        then stored."""
        keys = [self.key(model, revision, text, client=client) for text in texts]
        found, looked_up = await self._get(keys)
        missing = [i for i, scores in enumerate(found) if scores is None]
        computed = await compute([texts[i] for i in missing]) if missing else []
        out = list(found)
        for i, scores in zip(missing, computed, strict=True):
            out[i] = scores
        hits = len(texts) - len(missing)
        self.stats.update(hits=hits, misses=len(missing))
        if looked_up:
            self._count(hit=hits, miss=len(missing))
        else:
            self._count(error=len(keys))
        log.debug("cache_lookup", model=model, hits=hits, misses=len(missing), redis=looked_up)
        await self._put([keys[i] for i in missing], computed, hits)
        return [scores for scores in out if scores is not None]

    def _count(self, **results: int) -> None:
        for result, n in results.items():
            if n:  # a Ray counter refuses increments of 0
                self.metrics.cache.inc(n, tags={"result": result})

    async def _get(self, keys: list[str]) -> tuple[list[Scores | None], bool]:
        """The stored scores (None: a miss), and whether Redis answered at all."""
        try:
            raw: list[bytes | str | None] = await self.link.run(lambda c: c.mget(keys))
        except RedisUnavailableError:
            self.stats["unavailable"] += 1
            return [None] * len(keys), False
        return [_decode(value) for value in raw], True

    async def _put(self, keys: list[str], values: list[Scores], hits: int) -> None:
        async def write(client: Redis) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for key, scores in zip(keys, values, strict=True):
                    pipe.set(key, json.dumps(scores, separators=(",", ":")), ex=self.ttl_s)
                stats = self.link.key("cache", "stats")
                pipe.hincrby(stats, "hits", hits)
                pipe.hincrby(stats, "misses", len(keys))
                await pipe.execute()

        if keys or hits:
            try:
                await self.link.run(write)
            except RedisUnavailableError:
                self.stats["unavailable"] += 1


def _decode(value: bytes | str | None) -> Scores | None:
    """A stored value, or None (a miss) when absent or not a finite `{label: score}` map."""
    if value is None:
        return None
    try:
        loaded = json.loads(value)
    except ValueError:
        return None
    if not isinstance(loaded, dict) or not loaded:
        return None
    scores: Scores = {}
    for label, score in loaded.items():
        if not isinstance(score, int | float) or not math.isfinite(score):
            return None
        scores[str(label)] = float(score)
    return scores


def cache_from_settings(
    settings: ProtectionSettings, protection: ProtectionArgs
) -> PredictionCache:
    """The cache on `REDIS_URL`, keyed with a key derived from `HAPPYKUBE_API_KEY_PEPPER`."""
    from serve_app.redis_conn import link_from_settings

    link = link_from_settings(settings, protection)
    return PredictionCache(link, settings.pepper(), protection.cache_ttl_s)
