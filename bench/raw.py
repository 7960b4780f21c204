"""The quiet ceiling: each path's models in-process, with no Ray process on the machine.

Measured before the bench's own Ray instance starts, so neither Serve's controller, proxy
nor an earlier path's loaded replicas share the cores with it. Whether that held is
recorded (`ceiling_quiet`), not assumed: another program's Ray on the machine makes it false.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.paths import RAW_BATCH, PathSpec, load_path, messages
from bench.procs import ray_processes


def raw_throughput(
    path: PathSpec, texts: list[str], seconds: float, threads: int = 2, batch: int = RAW_BATCH
) -> float:
    """Messages per second through all of the path's models in-process, `batch` at a time."""
    import torch

    from serve_app.text import normalize

    torch.set_num_threads(threads)
    predictors = load_path(path)
    normalised = [normalize(t) for t in texts]
    for predictor in predictors:
        predictor.predict(normalised[:batch])
    done, i, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = normalised[i : i + batch] or normalised[:batch]
        for predictor in predictors:
            predictor.predict(chunk)
        done += len(chunk)
        i = (i + batch) % max(1, len(normalised) - batch)
    return done / (time.perf_counter() - start)


def quiet_ceiling(path: PathSpec, seconds: float) -> dict[str, Any]:
    """`raw_tps` (batches of 32) and `raw_single_tps` (one per pass), and whether it was quiet."""
    texts = messages(path.language)
    before = ray_processes()
    raw = raw_throughput(path, texts, seconds)
    single = raw_throughput(path, texts, seconds / 2, batch=1)
    quiet = not before and not ray_processes()
    return {
        "raw_tps": raw,
        "raw_single_tps": single,
        "ceiling_quiet": quiet,
        "ceiling_load_average": [round(x, 2) for x in os.getloadavg()],
    }
