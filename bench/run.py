"""`happykube bench`: what each serving path costs against its model's own limit and against
the server a user would write instead, in one run.

Paths (bench/paths.py): `en_fp32` and `en_int8` (one DistilRoBERTa-size model), `it_fp32` and
`it_int8` (two UmBERTo-size models per message), random weights, production architectures.

Per path, on this machine and in one run so that ratios are fair, one server at a time:
- `raw_tps`, `raw_single_tps`: the quiet ceiling (bench/raw.py), the path's models in-process
  with no Ray process on the machine, batches of 32 (a two-model path: the better of one after
  the other and side by side, both in `raw_placements`) and one message per pass;
  `ceiling_quiet` says whether it was. `raw_batch_gain` is what batching itself can buy on this CPU;
- `baseline_tps`, `baseline_p50_ms`: one uvicorn process with a micro-batcher serving the same
  predictor (bench/baseline.py) at 32 and 1 in flight, also before Ray starts;
- `e2e_tps`: HTTP through the ingress, router and model deployments, 32 requests in flight
  (closed loop; the table also has 1 and 8), one message per request; `e2e_over_baseline`,
  `e2e_over_raw` (above 1.0 is a measurement error, flagged in `errors`), `single_p50_ms` and
  `single_p50_over_baseline_ms` (one message alone, p50, against the baseline's);
- `cpu_ms_per_request`: CPU per request per Serve process at 32 in flight (bench/profile.py);
- `unbatched_tps`: batching off everywhere, as the old one-request-one-forward-pass service;
- `p99_half_load_over_single`: p99 latency at half of `e2e_tps`, offered at a steady rate
  (open loop) for about 500 requests, over the median latency of one request alone.
At top level: `cache_hit_speedup` (bench/cache.py) and `cold_start_s` (bench/cold.py).

The run ends with a table, a plot (var/bench/throughput.png) and one JSON line with every figure.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from bench.baseline import measure_baseline
from bench.load import open_loop, run_loop
from bench.paths import OUT, PATHS, REPO, PathSpec, messages, model_specs
from bench.procs import _haproxies, local_serve, ray_processes  # noqa: F401  # tests use them
from bench.raw import quiet_ceiling

CONCURRENCY = (1, 8, 32)
HALF_LOAD_REQUESTS = 500


def _deploy(path: PathSpec, batched: bool, common: dict[str, Any] | None = None) -> None:
    """The whole application, the path's models at full size, the others tiny and idle;
    `common` options apply to every deployment (the A/B runs of bench/ab.py)."""
    from ray import serve

    from serve_app.app import bind_graph
    from serve_app.config import AppArgs, GatherArgs, ModelSpec, ProtectionArgs
    from serve_app.registry import LABELS
    from testing.checkpoints import write_default_checkpoints

    tiny = {p.name: p for p in write_default_checkpoints(OUT / "tiny")}
    models = {name: ModelSpec(source=str(tiny[name]), labels=LABELS[name]) for name in LABELS}
    models.pop("en_sentiment", None)
    models.update(model_specs(path))
    # The cache is off (every request must reach a model) and the key is not rate-limited.
    protection = ProtectionArgs(cache_enabled=False, key_rate_per_minute=10**9)
    gather = GatherArgs(max_texts=path.gather_texts if batched else 1, wait_s=path.gather_wait_s)
    args = AppArgs(models=models, protection=protection, gather=gather)
    batch = {
        "max_batch_size": path.max_batch if batched else 1,
        "batch_wait_timeout_s": path.batch_wait_s if batched else 0.0,
        "torch_threads": path.threads,
    }
    options: dict[str, dict[str, Any]] = {}
    for name in models:
        busy = name in path.models
        options[name] = {
            "user_config": {**batch, "torch_threads": path.threads if busy else 1},
            "ray_actor_options": {"num_cpus": path.cpus / path.replicas if busy else 0.05},
            "max_ongoing_requests": 64,
            "autoscaling_config": None,
            "num_replicas": path.replicas if busy else 1,
        }
    for name in ("Ingress", "LanguageRouter", *models):
        options.setdefault(name, {}).update(common or {})
    serve.run(bind_graph(args, options), name="bench", route_prefix="/")


@dataclass
class PathResult:
    name: str
    ceiling: dict[str, Any]
    baseline: dict[int, dict[str, Any]]
    e2e: list[dict[str, Any]] = field(default_factory=list)
    unbatched: list[dict[str, Any]] = field(default_factory=list)
    half_load: dict[str, Any] = field(default_factory=dict)
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)

    @property
    def raw_tps(self) -> float:
        return float(self.ceiling["raw_tps"])

    @property
    def one_after_other_tps(self) -> float:
        return float(self.ceiling["raw_placements"]["one_after_other"])

    @property
    def raw_single_tps(self) -> float:
        return float(self.ceiling["raw_single_tps"])

    def figures(self) -> dict[str, Any]:
        top = max(CONCURRENCY)
        e2e = {r["concurrency"]: r for r in self.e2e}
        unbatched = {r["concurrency"]: r for r in self.unbatched}
        single_ms = e2e[1]["p50_ms"]
        base_tps, base_single_ms = self.baseline[top]["tps"], self.baseline[1]["p50_ms"]
        over_raw = e2e[top]["tps"] / self.raw_tps
        errors = []
        if over_raw > 1.0:
            # No server beats its own model in-process: the ceiling was measured under load.
            errors.append(f"e2e_over_raw {over_raw:.2f} > 1: the ceiling is not a ceiling")
        if not self.ceiling["ceiling_quiet"]:
            errors.append("a Ray process was running while the ceiling was measured")
        return {
            "raw_tps": round(self.raw_tps, 2),
            "raw_single_tps": round(self.raw_single_tps, 2),
            "raw_placements": self.ceiling["raw_placements"],
            "ceiling_quiet": self.ceiling["ceiling_quiet"],
            "ceiling_load_average": self.ceiling["ceiling_load_average"],
            # Both in one placement: one per pass is measured one model after the other.
            "raw_batch_gain": round(self.one_after_other_tps / self.raw_single_tps, 3),
            "baseline_tps": round(base_tps, 2),
            "baseline_p50_ms": round(base_single_ms, 1),
            "e2e_tps": round(e2e[top]["tps"], 2),
            "e2e_over_baseline": round(e2e[top]["tps"] / base_tps, 3),
            "unbatched_tps": round(unbatched[top]["tps"], 2),
            "e2e_over_raw": round(over_raw, 3),
            "batched_over_unbatched": round(e2e[top]["tps"] / unbatched[top]["tps"], 3),
            "single_p50_ms": round(single_ms, 1),
            "single_p50_over_baseline_ms": round(single_ms - base_single_ms, 1),
            "half_load_p99_ms": round(self.half_load["p99_ms"], 1),
            "p99_half_load_over_single": round(self.half_load["p99_ms"] / single_ms, 3),
            "cpu_ms_per_request": self.cpu_ms_per_request,
            "baseline_cpu_ms_per_request": self.baseline[top].get("cpu_ms_per_request"),
            "measurement_errors": errors,
            "e2e": self.e2e,
            "unbatched": self.unbatched,
            "half_load": self.half_load,
            "baseline": [self.baseline[c] for c in sorted(self.baseline)],
        }


def measure_quiet(path: PathSpec, seconds: float, echo: Callable[[str], None]) -> PathResult:
    """The ceiling and the baseline, both before the bench's Ray instance exists."""
    echo(f"{path.name}: quiet ceiling in-process, {seconds:.0f}s ...")
    ceiling = quiet_ceiling(path, seconds)
    echo(
        f"  raw {ceiling['raw_tps']:7.1f} msg/s {ceiling['raw_placements']},"
        f" one per pass {ceiling['raw_single_tps']:7.1f}"
        f"  quiet {ceiling['ceiling_quiet']}  load {ceiling['ceiling_load_average']}"
    )
    baseline = measure_baseline(path, seconds)
    for c, row in baseline.items():
        echo(f"  baseline  c={c:<3d} {row['tps']:7.1f} msg/s  p50 {row['p50_ms']:.0f} ms")
    return PathResult(path.name, ceiling, baseline)


def measure_serve(
    path: PathSpec, result: PathResult, url: str, seconds: float, echo: Callable[[str], None]
) -> None:
    """Batched and unbatched through the served app; CPU per request per process at c=32."""
    from bench.profile import cpu_per_request

    texts = messages(path.language)
    for batched in (True, False):
        label = "batched" if batched else "unbatched"
        _deploy(path, batched)
        run_loop(url, texts, path.language, 4, 2.0)  # warm-up
        rows = []
        for c in CONCURRENCY:
            if batched and c == max(CONCURRENCY):
                row, result.cpu_ms_per_request = cpu_per_request(
                    lambda c=c: run_loop(url, texts, path.language, c, seconds), seconds
                )
            else:
                row = run_loop(url, texts, path.language, c, seconds)
            echo(
                f"  {label:9s} c={c:<3d} {row['tps']:7.1f} msg/s  p50 {row['p50_ms']:.0f} ms"
                f"  p99 {row['p99_ms']:.0f} ms  errors {row['errors']}"
            )
            rows.append(row)
        if not batched:
            result.unbatched = rows
            continue
        result.e2e = rows
        echo(f"  CPU ms per request at c=32: {result.cpu_ms_per_request}")
        import asyncio

        rate = max(1.0, rows[-1]["tps"] / 2)
        # A p99 needs samples: long enough for HALF_LOAD_REQUESTS, within 4x the other phases.
        span = min(4 * seconds, max(seconds, HALF_LOAD_REQUESTS / rate))
        result.half_load = asyncio.run(open_loop(url, texts, path.language, rate, span))
        echo(
            f"  half load {rate:7.1f} msg/s offered: p50 {result.half_load['p50_ms']:.0f} ms"
            f"  p99 {result.half_load['p99_ms']:.0f} ms"
        )


def run(
    seconds: float = 8.0, paths: tuple[str, ...] = tuple(PATHS), cold: bool = True
) -> dict[str, Any]:
    from bench.cache import cache_hit_speedup
    from bench.cold import cold_start
    from bench.plot import plot

    echo = typer.echo
    if ray_processes():
        echo("warning: a Ray process is running on this machine; the ceiling is not quiet")
    results = {name: measure_quiet(PATHS[name], seconds, echo) for name in paths}
    with local_serve() as url:
        for name in paths:
            echo(f"{name}: through Serve ...")
            measure_serve(PATHS[name], results[name], url, seconds, echo)
    out: dict[str, Any] = {name: result.figures() for name, result in results.items()}
    out["ceiling_quiet"] = all(out[name]["ceiling_quiet"] for name in paths)
    echo("cache hit against a model call (in-process, one message) ...")
    cache = cache_hit_speedup()
    echo(f"  model call {cache['model_call_ms']:.2f} ms, cache hit {cache['cache_hit_ms']:.3f} ms")
    out.update(cache)
    if cold:
        echo("cold start: serve run serve_config.yaml -> /readyz 200 ...")
        out["cold_start_s"] = round(cold_start(), 1)
        echo(f"  {out['cold_start_s']:.1f} s")
    out["machine"] = machine()
    out["plot"] = str(plot(results, OUT / "throughput.png").relative_to(REPO))
    return out


def machine() -> dict[str, Any]:
    import platform

    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def print_table(out: dict[str, Any]) -> None:
    cols = (
        ("raw_tps", "raw/s", 7, ".1f"),
        ("baseline_tps", "base/s", 7, ".1f"),
        ("e2e_tps", "e2e/s", 7, ".1f"),
        ("e2e_over_baseline", "e2e/base", 8, ".2f"),
        ("e2e_over_raw", "e2e/raw", 7, ".2f"),
        ("baseline_p50_ms", "base1 ms", 8, ".0f"),
        ("single_p50_ms", "e2e1 ms", 7, ".0f"),
        ("batched_over_unbatched", "b/unb", 5, ".2f"),
        ("raw_batch_gain", "raw gain", 8, ".2f"),
        ("p99_half_load_over_single", "p99h/1", 6, ".2f"),
    )
    typer.echo(f"{'path':8s} " + " ".join(f"{head:>{w}s}" for _, head, w, _ in cols))
    for name in PATHS:
        if name in out:
            r = out[name]
            cells = " ".join(f"{r[key]:{w}{fmt}}" for key, _, w, fmt in cols)
            typer.echo(f"{name:8s} {cells}")
            for error in r["measurement_errors"]:
                typer.echo(f"  MEASUREMENT ERROR: {error}")
    extras = [f"cache_hit_speedup {out['cache_hit_speedup']:.0f}x"]
    if "cold_start_s" in out:
        extras.append(f"cold_start_s {out['cold_start_s']:.1f}")
    extras.append(f"ceiling_quiet {out['ceiling_quiet']}")
    typer.echo("  ".join(extras))


def main(seconds: float = 8.0, paths: tuple[str, ...] = tuple(PATHS), cold: bool = True) -> None:
    unknown = set(paths) - set(PATHS)
    if unknown:
        raise typer.BadParameter(f"unknown paths {sorted(unknown)}; known: {list(PATHS)}")
    out = run(seconds, paths, cold)
    saved = OUT / "latest.json"
    saved.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    typer.echo(f"plot: {out['plot']}  figures: {saved.relative_to(REPO)}")
    typer.echo("")
    print_table(out)
    sys.stdout.write(json.dumps(out) + "\n")
