"""The bench's plot: throughput against requests in flight, per path."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(results: dict[str, Any], path: Path) -> Path:
    """Throughput against concurrency per path: raw ceiling, batched and unbatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.2), dpi=110)
    grid = [axes] if len(results) == 1 else list(axes)
    for ax, (name, result) in zip(grid, results.items(), strict=True):
        for rows, label, style in (
            (result.e2e, "through Serve, batched", "o-"),
            (result.unbatched, "through Serve, unbatched", "s--"),
        ):
            xs = [r["concurrency"] for r in rows]
            ax.plot(xs, [r["tps"] for r in rows], style, label=label)
        if result.baseline:
            xs = sorted(result.baseline)
            rates = [result.baseline[c]["tps"] for c in xs]
            ax.plot(xs, rates, "^-", color="black", label="baseline: uvicorn + micro-batcher")
        ax.axhline(result.raw_tps, color="grey", linestyle=":", label="quiet ceiling, batch 32")
        ax.axhline(
            result.raw_single_tps, color="grey", linestyle="-.", label="quiet ceiling, batch 1"
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("messages per second")
        ax.set_title(name)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
