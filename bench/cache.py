"""A prediction served from the Redis cache against one model call, both in-process."""

from __future__ import annotations

import asyncio
import secrets
import time

from bench.paths import EN_LABELS, PATHS, messages, model_specs


def cache_hit_speedup(n: int = 200) -> dict[str, float]:
    """One message from the Redis prediction cache against one model call, in-process."""
    import torch

    from serve_app.cache import cache_from_settings
    from serve_app.config import ProtectionArgs, ProtectionSettings
    from serve_app.models import load_predictor
    from serve_app.text import normalize

    torch.set_num_threads(2)
    texts = [normalize(t) for t in messages("en", n)]
    (spec,) = model_specs(PATHS["en_fp32"]).values()
    predictor = load_predictor("en_emotion", spec)
    predictor.predict(texts[:1])
    start = time.perf_counter()
    for text in texts:
        predictor.predict([text])
    model_s = (time.perf_counter() - start) / len(texts)

    protection = ProtectionArgs(cache_ttl_s=600, redis_timeout_s=1.0)
    cache = cache_from_settings(ProtectionSettings(), protection)

    async def compute(batch: list[str]) -> list[dict[str, float]]:
        rows = predictor.predict(batch).tolist()
        return [dict(zip(EN_LABELS, row, strict=True)) for row in rows]

    async def lookups() -> float:
        model = f"bench-{secrets.token_hex(4)}"  # fresh keys: the first pass fills them
        for text in texts:
            await cache.through(model, "r", [text], compute, client="bench")
        if cache.stats.get("hits", 0) != 0:
            raise RuntimeError("the prediction cache answered before it was filled")
        start = time.perf_counter()
        for text in texts:
            await cache.through(model, "r", [text], compute, client="bench")
        elapsed = (time.perf_counter() - start) / len(texts)
        if cache.stats.get("hits", 0) != len(texts):
            raise RuntimeError(f"expected {len(texts)} cache hits, got {cache.stats}")
        return elapsed

    hit_s = asyncio.run(lookups())
    return {
        "model_call_ms": round(1000 * model_s, 3),
        "cache_hit_ms": round(1000 * hit_s, 3),
        "cache_hit_speedup": round(model_s / hit_s, 1),
    }
