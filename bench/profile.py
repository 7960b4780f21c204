"""Where the time goes: CPU per request per process while the load runs, from Linux's own
accounting (/proc/PID/stat), and on request a py-spy profile of each process.

`cpu_per_request` reads every Serve replica's and the proxy's CPU time before and after one
closed-loop run and divides by the requests answered: the table BENCHMARKS.md keeps before
and after each hot-path change. With `HAPPYKUBE_BENCH_PYSPY=DIR`, py-spy (a dev extra)
records each of those processes for the run into DIR/<process>.txt (collapsed stacks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procs import cpu_seconds, serve_processes


def _pyspy(pids: dict[str, int], seconds: float) -> list[subprocess.Popen[bytes]]:
    out = os.environ.get("HAPPYKUBE_BENCH_PYSPY")
    tool = shutil.which("py-spy")
    if not out or not tool:
        return []
    Path(out).mkdir(parents=True, exist_ok=True)
    only = [p for p in os.environ.get("HAPPYKUBE_BENCH_PYSPY_ONLY", "").split(",") if p]
    procs = []
    for name, pid in pids.items():
        if only and not name.startswith(tuple(only)):
            continue
        target = Path(out) / (name.replace("/", "_").replace(" ", "_") + ".txt")
        cmd = [tool, "record", "--pid", str(pid), "--duration", str(int(seconds))]
        # --gil: only the thread holding the GIL, so a thread blocked in C is not counted.
        cmd += ["--format", "raw", "--rate", "100", "--gil", "--nonblocking"]
        cmd += ["--output", str(target)]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        )
    return procs


def cpu_per_request(
    work: Callable[[], dict[str, Any]], seconds: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run `work` (a closed loop) and return its figures and CPU ms per request per process."""
    pids = serve_processes()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    spies = _pyspy(pids, seconds)
    row = work()
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    for spy in spies:
        spy.wait(60)
    requests = max(1, round(row["tps"] * seconds))
    per_request = {name: round(1000 * (after[name] - before[name]) / requests, 2) for name in pids}
    per_request["total"] = round(sum(per_request.values()), 2)
    return row, per_request
