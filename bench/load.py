"""The bench's one HTTP client: closed loop (n in flight) and open loop (a steady rate).

The same client measures the project and the baseline, so their figures compare.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.paths import BENCH_KEY


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    latencies = sorted(latencies)
    return {
        "tps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "errors": errors,
        # Every request answered, errors included: what a CPU-per-request figure divides by.
        "answered": len(latencies) + errors,
    }


async def _post(session: Any, url: str, text: str, language: str) -> tuple[bool, float]:
    t0 = time.perf_counter()
    payload = {"text": text, "language": language}
    async with session.post(
        f"{url}/api/v1/emotion", json=payload, headers={"X-API-Key": BENCH_KEY}
    ) as resp:
        await resp.read()
        return resp.status == 200, time.perf_counter() - t0


async def closed_loop(
    url: str, texts: list[str], language: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` clients, each sending its next request when the last is answered."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop:
            ok, latency = await _post(session, url, texts[i % len(texts)], language)
            if ok:
                latencies.append(latency)
            else:
                errors += 1
            i += concurrency

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(k, session) for k in range(concurrency)))
    return {"concurrency": concurrency, **summary(latencies, time.perf_counter() - start, errors)}


async def open_loop(
    url: str, texts: list[str], language: str, rate: float, seconds: float
) -> dict[str, Any]:
    """Requests offered at a steady `rate` per second, whatever the answers' pace."""
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def one(session: aiohttp.ClientSession, text: str) -> None:
        nonlocal errors
        ok, latency = await _post(session, url, text, language)
        if ok:
            latencies.append(latency)
        else:
            errors += 1

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    # A bounded pool of kept-alive connections, as a client or load balancer would hold.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        k = 0
        while (due := start + k / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(session, texts[k % len(texts)])))
            k += 1
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {"offered_rate": rate, **summary(latencies, elapsed, errors)}


def run_loop(url: str, texts: list[str], language: str, concurrency: int, seconds: float) -> Any:
    return asyncio.run(closed_loop(url, texts, language, concurrency, seconds))
