"""The quiet ceiling: each path's models in-process, with no Ray process on the machine.

Measured before the bench's own Ray instance starts, so neither Serve's controller, proxy
nor an earlier path's loaded replicas share the cores with it. Whether that held is
recorded (`ceiling_quiet`), not assumed: another program's Ray on the machine makes it false.

A path of two models (Italian: emotion and sentiment) has two placements, and the ceiling is
the better one: one after the other on both cores (two torch threads), or side by side, each
model on its own thread with one torch thread, as Serve places them (one replica each). The
slower model then bounds the path. Measuring only the first made Serve look faster than its
own ceiling (it_int8 e2e/raw 1.02 on 2026-12-03).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.paths import RAW_BATCH, PathSpec, load_path, messages
from bench.procs import ray_processes


def _loop(predict: Any, texts: list[str], batch: int, seconds: float) -> tuple[int, float]:
    """Run `predict` over `texts`, `batch` at a time, for `seconds`: (texts done, elapsed)."""
    done, i, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = texts[i : i + batch] or texts[:batch]
        predict(chunk)
        done += len(chunk)
        i = (i + batch) % max(1, len(texts) - batch)
    return done, time.perf_counter() - start


def _warm(
    path: PathSpec, texts: list[str], threads: int, batch: int
) -> tuple[list[Any], list[str]]:
    """The path's predictors on `threads` torch threads, each run once; the texts normalised."""
    import torch

    from serve_app.text import normalize

    torch.set_num_threads(threads)
    predictors = load_path(path)
    normalised = [normalize(t) for t in texts]
    for predictor in predictors:
        predictor.predict(normalised[:batch])
    return predictors, normalised


def raw_throughput(
    path: PathSpec, texts: list[str], seconds: float, threads: int = 2, batch: int = RAW_BATCH
) -> float:
    """Messages per second through all of the path's models in-process, `batch` at a time,
    one model after the other on `threads` torch threads."""
    predictors, normalised = _warm(path, texts, threads, batch)

    def every_model(chunk: list[str]) -> None:
        for predictor in predictors:
            predictor.predict(chunk)

    done, elapsed = _loop(every_model, normalised, batch, seconds)
    return done / elapsed


def side_by_side_throughput(
    path: PathSpec, texts: list[str], seconds: float, batch: int = RAW_BATCH
) -> float:
    """Messages per second with each of the path's models on a thread of its own (one torch
    thread each), all running at once: the slowest model's rate bounds the path."""
    predictors, normalised = _warm(path, texts, 1, batch)
    start = threading.Barrier(len(predictors))

    def run(predictor: Any) -> float:
        start.wait()
        done, elapsed = _loop(predictor.predict, normalised, batch, seconds)
        return done / elapsed

    with ThreadPoolExecutor(max_workers=len(predictors)) as pool:
        futures = [pool.submit(run, p) for p in predictors]
        rates = [future.result() for future in futures]  # a model that failed raises here
    return min(rates)


def quiet_ceiling(path: PathSpec, seconds: float) -> dict[str, Any]:
    """`raw_tps` (batches of 32, the better placement) and `raw_single_tps` (one per pass),
    and whether it was quiet."""
    texts = messages(path.language)
    before = ray_processes()
    placements = {"one_after_other": raw_throughput(path, texts, seconds)}
    if len(path.models) > 1:
        placements["side_by_side"] = side_by_side_throughput(path, texts, seconds)
    single = raw_throughput(path, texts, seconds / 2, batch=1)
    quiet = not before and not ray_processes()
    return {
        "raw_tps": max(placements.values()),
        "raw_placements": {name: round(tps, 2) for name, tps in placements.items()},
        "raw_single_tps": single,
        "ceiling_quiet": quiet,
        "ceiling_load_average": [round(x, 2) for x in os.getloadavg()],
    }
