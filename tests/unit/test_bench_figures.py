"""The bench's own arithmetic: a ratio above the ceiling is an error, and the baseline's
micro-batcher answers every request with its own row."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.baseline import MAX_BATCH, MicroBatcher
from bench.run import PathResult


def _row(concurrency: int, tps: float, p50: float) -> dict[str, Any]:
    return {"concurrency": concurrency, "tps": tps, "p50_ms": p50, "p99_ms": 2 * p50}


def _result(raw_tps: float, quiet: bool) -> PathResult:
    ceiling = {
        "raw_tps": raw_tps,
        "raw_single_tps": 40.0,
        "ceiling_quiet": quiet,
        "ceiling_load_average": [0.1, 0.1, 0.1],
    }
    result = PathResult("en_int8", ceiling, {1: _row(1, 60, 16), 32: _row(32, 200, 150)})
    result.e2e = [_row(1, 30, 30), _row(8, 80, 90), _row(32, 180, 170)]
    result.unbatched = [_row(1, 30, 30), _row(8, 50, 150), _row(32, 60, 500)]
    result.half_load = {"p99_ms": 90.0}
    return result


def test_ratios_against_the_baseline_and_the_single_message_gap() -> None:
    figures = _result(raw_tps=250.0, quiet=True).figures()
    assert figures["e2e_over_baseline"] == 0.9
    assert figures["single_p50_over_baseline_ms"] == 14.0
    assert figures["ceiling_quiet"] is True
    assert figures["measurement_errors"] == []


def test_a_ceiling_below_the_service_is_a_measurement_error_not_a_result() -> None:
    figures = _result(raw_tps=150.0, quiet=False).figures()
    errors = " ".join(figures["measurement_errors"])
    assert "e2e_over_raw 1.20 > 1" in errors
    assert "Ray process was running" in errors


def test_micro_batcher_batches_concurrent_requests_and_keeps_them_apart() -> None:
    sizes: list[int] = []

    def predict(texts: list[str]) -> list[str]:
        sizes.append(len(texts))
        return [t.upper() for t in texts]

    async def main() -> list[str]:
        batcher = MicroBatcher(predict)
        task = asyncio.create_task(batcher.run())
        answers = await asyncio.gather(*(batcher.submit(f"m{i}") for i in range(40)))
        task.cancel()
        return list(answers)

    assert asyncio.run(main()) == [f"M{i}" for i in range(40)]
    assert max(sizes) == MAX_BATCH and sum(sizes) == 40
