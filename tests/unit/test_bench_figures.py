"""The bench's own arithmetic: a ratio above the ceiling is an error, the baseline's
micro-batcher answers every request with its own row, and a two-model ceiling is measured in
both placements."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench.baseline import MAX_BATCH, MicroBatcher
from bench.paths import PATHS
from bench.run import PathResult


def _row(concurrency: int, tps: float, p50: float) -> dict[str, Any]:
    return {"concurrency": concurrency, "tps": tps, "p50_ms": p50, "p99_ms": 2 * p50}


def _result(raw_tps: float, quiet: bool) -> PathResult:
    ceiling = {
        "raw_tps": raw_tps,
        "raw_placements": {"one_after_other": raw_tps},
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


class _Model:
    """A stand-in predictor that notes which thread ran it, and when."""

    def __init__(
        self, log: list[tuple[str, int, float, float]], name: str, pass_s: float = 0.002
    ) -> None:
        self.log, self.name, self.pass_s = log, name, pass_s

    def predict(self, texts: list[str]) -> list[int]:
        start = time.perf_counter()
        time.sleep(self.pass_s)  # releases the GIL, as torch's kernels do
        self.log.append((self.name, threading.get_ident(), start, time.perf_counter()))
        return [0] * len(texts)


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """The ceiling sets torch's thread count for the process; give the next test it back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_two_model_ceiling_also_runs_the_models_side_by_side(
    monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    """Serve runs the Italian models in two replicas at once; the ceiling measures that
    placement too (each model on its own thread), and keeps the better of the two."""
    import bench.raw

    log: list[tuple[str, int, float, float]] = []
    # "b" takes 40x as long a pass as "a": side by side, the path goes at b's pace.
    models = [_Model(log, "a", 0.0005), _Model(log, "b", 0.02)]
    monkeypatch.setattr(bench.raw, "load_path", lambda path: models)
    monkeypatch.setattr(bench.raw, "ray_processes", set)
    ceiling = bench.raw.quiet_ceiling(PATHS["it_int8"], 0.2)
    # At most 32 texts per 20 ms pass of b (sleep never returns early); a's pace is >= 40x that.
    assert ceiling["raw_placements"]["side_by_side"] <= 32 / 0.02
    assert set(ceiling["raw_placements"]) == {"one_after_other", "side_by_side"}
    assert round(ceiling["raw_tps"], 2) == max(ceiling["raw_placements"].values())
    threads = {name: {ident for n, ident, _, _ in log if n == name} for name in "ab"}
    main = threading.get_ident()
    side = {name: idents - {main} for name, idents in threads.items()}
    assert side["a"] and side["b"] and not side["a"] & side["b"]  # a thread each
    a_runs = [(s, e) for n, ident, s, e in log if n == "a" and ident in side["a"]]
    b_runs = [(s, e) for n, ident, s, e in log if n == "b" and ident in side["b"]]
    assert max(s for s, _ in a_runs) > min(s for s, _ in b_runs)  # they ran at once
    assert max(s for s, _ in b_runs) > min(s for s, _ in a_runs)


def test_a_model_that_fails_side_by_side_fails_the_ceiling(
    monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    """Not the other model's rate reported as the path's."""
    import bench.raw

    class Broken(_Model):
        def predict(self, texts: list[str]) -> list[int]:
            if len(self.log) > 2:
                raise RuntimeError("out of memory")
            return super().predict(texts)

    log: list[tuple[str, int, float, float]] = []
    monkeypatch.setattr(bench.raw, "load_path", lambda path: [_Model([], "a"), Broken(log, "b")])
    with pytest.raises(RuntimeError, match="out of memory"):
        bench.raw.side_by_side_throughput(PATHS["it_int8"], ["ciao"] * 64, 0.2)


def test_the_batch_gain_compares_one_placement() -> None:
    """One message per pass is measured one model after the other: so is the gain's numerator,
    even where side by side made the ceiling."""
    result = _result(raw_tps=250.0, quiet=True)
    result.ceiling["raw_placements"] = {"one_after_other": 80.0, "side_by_side": 250.0}
    assert result.figures()["raw_batch_gain"] == 2.0  # 80 / 40, not 250 / 40


def test_a_one_model_ceiling_has_one_placement(
    monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    import bench.raw

    monkeypatch.setattr(bench.raw, "load_path", lambda path: [_Model([], "a")])
    monkeypatch.setattr(bench.raw, "ray_processes", set)
    ceiling = bench.raw.quiet_ceiling(PATHS["en_int8"], 0.1)
    assert list(ceiling["raw_placements"]) == ["one_after_other"]


def test_a_profile_summary_shares_samples_by_package_and_names_our_frames(tmp_path: Any) -> None:
    from pathlib import Path

    from bench.profile import summarise

    stacks = Path(tmp_path) / "Ingress#1.txt"
    stacks.write_text(
        "run (asyncio/events.py:80);emotion (serve_app/api.py:139);remote (ray/handle.py:9) 3\n"
        "run (asyncio/events.py:80);emotion (serve_app/api.py:140);dumps (json/__init__.py:231) 1\n"
        "run (asyncio/events.py:80);send (uvicorn/protocols/http/h11.py:5) 4\n",
        encoding="utf-8",
    )
    summary = summarise(stacks)
    assert summary["samples"] == 8
    assert summary["package_share_pct"] == {"uvicorn": 50.0, "ray": 37.5, "json": 12.5}
    # Lines of one function count once per sample, whichever line it was on.
    assert summary["our_frames_pct"] == {"emotion (serve_app/api.py)": 50.0}
