"""Where the time goes: CPU per request per process while the load runs, from Linux's own
accounting (/proc/PID/stat), and on request a py-spy profile of each process.

`cpu_per_request` reads every Serve replica's and the proxy's CPU time before and after one
closed-loop run and divides by the requests answered: the table BENCHMARKS.md keeps before
and after each hot-path change. With `HAPPYKUBE_BENCH_PYSPY=DIR`, py-spy (a dev extra)
records each of those processes for the run into DIR/<process>.txt (collapsed stacks), only
the thread holding the GIL (Python's own time), at 100 Hz; `HAPPYKUBE_BENCH_PYSPY_ONLY=Ingress,
LanguageRouter` limits it to those (eight samplers at once slowed the service itself 10x).

    python -m bench.profile DIR [--top 12]

prints, per recorded process, where its Python time went: the share of samples by the package
of the innermost frame (ray, uvicorn, fastapi, torch, serve_app, ...) and the frames of ours
(serve_app, db, contract) that were on the stack most often.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
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
    requests = max(1, row["answered"])
    per_request = {name: round(1000 * (after[name] - before[name]) / requests, 2) for name in pids}
    per_request["total"] = round(sum(per_request.values()), 2)
    return row, per_request


OURS = ("serve_app/", "db/", "contract/")
_FILE = re.compile(r"\(([^:()]+):\d+\)$")


def summarise(stacks: Path) -> dict[str, Any]:
    """Samples, the share by package of the innermost frame, and our frames' inclusive share,
    from one py-spy raw file (`frame;frame;... count` per line)."""
    packages: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        total += n
        where = _FILE.search(frames[-1])
        packages[where.group(1).split("/")[0].removesuffix(".py") if where else "?"] += n
        for frame in {
            f.rsplit(":", 1)[0] + ")" for f in frames if f.split("(")[-1].startswith(OURS)
        }:
            ours[frame] += n
    share = {name: round(100 * n / max(1, total), 1) for name, n in packages.most_common()}
    mine = {name: round(100 * n / max(1, total), 1) for name, n in ours.most_common()}
    return {"samples": total, "package_share_pct": share, "our_frames_pct": mine}


def main(directory: Path, top: int = 12) -> None:
    for path in sorted(directory.glob("*.txt")):
        summary = summarise(path)
        sys.stdout.write(f"{path.stem}: {summary['samples']} samples with the GIL\n")
        for title, key in (("by package", "package_share_pct"), ("our frames", "our_frames_pct")):
            rows = list(summary[key].items())[:top]
            sys.stdout.write(f"  {title}: " + ", ".join(f"{k} {v}%" for k, v in rows) + "\n")


if __name__ == "__main__":
    import typer

    typer.run(main)
