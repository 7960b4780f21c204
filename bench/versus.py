"""The project against the baseline, in alternating arms: how far apart they are, and how sure.

    python -m bench.versus en_int8 --rounds 3 --seconds 5

One figure moves up to 2x between runs minutes apart on a shared two-core machine, so a ratio
of two figures taken once each is no evidence. Here each round measures both servers, one at
a time, in ABBA order (baseline then project, then project then baseline, ...) so that a drift
in the machine's speed falls on both; each round gives its own e2e/baseline at 32 in flight
and its own single-message p50 difference, and the summary is their median and range.

The baseline arm runs with no Ray process on the machine (bench/baseline.py); the project arm
starts the bench's private Ray and Serve, deploys the path batched as `happykube bench` does,
warms up, and measures c=1 and c=32, with CPU ms per request per process at c=32. Progress goes
to stderr; each arm is one JSON line on stdout, the summary the last.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

import typer

from bench.baseline import measure_baseline
from bench.load import run_loop
from bench.paths import PATHS, PathSpec, messages
from bench.procs import local_serve, ray_processes
from bench.profile import cpu_per_request


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def baseline_arm(path: PathSpec, seconds: float, settle_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + settle_s  # the last project arm's Ray may still be exiting
    while ray_processes():
        if time.monotonic() > deadline:
            raise RuntimeError("a Ray process is running: the baseline arm would share its cores")
        time.sleep(0.5)
    load = _load()
    rows = measure_baseline(path, seconds)
    return {
        "arm": "baseline",
        "load_average": load,
        "c1_p50_ms": round(rows[1]["p50_ms"], 1),
        "c32_tps": round(rows[32]["tps"], 2),
        "cpu_ms_per_request": rows[32]["cpu_ms_per_request"],
    }


def project_arm(
    path: PathSpec, seconds: float, common: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The path deployed batched on a private Ray (`common` options on every deployment, as in
    bench/ab.py): c=1, then c=32 with the CPU ms per request per process."""
    from bench.run import _deploy

    texts = messages(path.language)
    with local_serve() as url:
        _deploy(path, batched=True, common=common)
        run_loop(url, texts, path.language, 4, 2.0)  # warm-up
        load = _load()
        single = run_loop(url, texts, path.language, 1, seconds)
        full, cpu = cpu_per_request(
            lambda: run_loop(url, texts, path.language, 32, seconds), seconds
        )
    return {
        "arm": "project",
        "load_average": load,
        "c1_p50_ms": round(single["p50_ms"], 1),
        "c1_tps": round(single["tps"], 1),
        "c32_tps": round(full["tps"], 2),
        "errors": full["errors"] + single["errors"],
        "cpu_ms_per_request": cpu,
    }


def summarise(path: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Per round e2e/baseline at c=32 and the c=1 p50 difference; their median and range."""
    ratios = [round(p["c32_tps"] / b["c32_tps"], 3) for b, p in pairs]
    extra_ms = [round(p["c1_p50_ms"] - b["c1_p50_ms"], 1) for b, p in pairs]
    return {
        "path": path,
        "rounds": len(pairs),
        "e2e_over_baseline": ratios,
        "e2e_over_baseline_median": round(statistics.median(ratios), 3),
        "single_p50_over_baseline_ms": extra_ms,
        "single_p50_over_baseline_ms_median": round(statistics.median(extra_ms), 1),
        "goal_met": {
            "e2e_over_baseline>=0.90": min(ratios) >= 0.90,
            "single_p50<=baseline+10ms": max(extra_ms) <= 10.0,
        },
    }


def main(path: str, rounds: int = 3, seconds: float = 5.0) -> None:
    if path not in PATHS:
        raise typer.BadParameter(f"unknown path {path!r}; known: {list(PATHS)}")
    spec = PATHS[path]
    pairs = []
    for i in range(rounds):
        order = ("baseline", "project") if i % 2 == 0 else ("project", "baseline")
        arms: dict[str, dict[str, Any]] = {}
        for name in order:
            start = time.perf_counter()
            arm = (baseline_arm if name == "baseline" else project_arm)(spec, seconds)
            arm["round"] = i + 1
            arms[name] = arm
            typer.echo(
                f"round {i + 1}/{rounds} {name:8s} c=32 {arm['c32_tps']:7.1f} msg/s"
                f"  c=1 p50 {arm['c1_p50_ms']:5.1f} ms  load {arm['load_average']}"
                f"  ({time.perf_counter() - start:.0f} s)",
                err=True,
            )
            sys.stdout.write(json.dumps(arm) + "\n")
        pairs.append((arms["baseline"], arms["project"]))
    sys.stdout.write(json.dumps(summarise(path, pairs)) + "\n")


if __name__ == "__main__":
    typer.run(main)
