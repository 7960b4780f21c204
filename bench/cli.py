"""`happykube bench`: registered by name in serve_app/cli.py, imported only when it runs."""

from __future__ import annotations

import typer


def bench_command(
    seconds: float = typer.Option(8.0, help="Seconds per measurement."),
    paths: str = typer.Option(
        "en_fp32,en_int8,it_fp32,it_int8", help="Comma-separated paths to run."
    ),
    cold_start: bool = typer.Option(True, help="Also time `serve run` to /readyz 200."),
    scaling: bool = typer.Option(
        False, "--scaling", help="Only the autoscaling run: replicas and throughput over time."
    ),
) -> None:
    """Quiet ceiling, baseline, e2e and unbatched throughput, latency, CPU, cache; a JSON line."""
    if scaling:
        from bench.scaling import main as run_scaling

        run_scaling()
        return
    from bench.run import main as run_bench

    run_bench(seconds, tuple(p.strip() for p in paths.split(",") if p.strip()), cold_start)
