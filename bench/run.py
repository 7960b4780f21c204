"""`happykube bench`: what batching buys, and what Serve's hops cost, in one run.

For the English path it measures, on this machine and in one run so that ratios are fair:
- raw: the model in-process, batched (32), sorted by length: the ceiling;
- e2e: HTTP through the proxy, ingress, router and model deployment at concurrency 1, 8, 32;
- unbatched: the same with `max_batch_size: 1` (one forward pass per request, as the old
  Flask service did), retuned live through `reconfigure`;
and prints a table, then one JSON line with every figure.

Cost is realistic, quality is not: the model is a checkpoint generated here with the
architecture of j-hartmann/emotion-english-distilroberta-base (6 layers, 768 wide) and
random weights, named as such in the output. Messages are real short texts from the
GoEmotions dev split when ../shared/data is present.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import secrets
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[1]
# A throwaway key for this process's own local instance only.
BENCH_KEY = "hk_bench_" + secrets.token_urlsafe(32)
DATA = REPO.parent / "shared" / "data" / "goemotions" / "ekman_dev.csv"
EN_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
_FALLBACK = [
    "I can't believe they cancelled the concert again, so annoying",
    "Thanks so much, this made my whole day better",
    "I'm really worried about the exam tomorrow morning",
    "That movie was fine I guess, nothing special",
    "Wow I did not see that coming at all",
]


def messages(n: int = 512) -> list[str]:
    """Short real messages (GoEmotions dev) or, without the data folder, a fixed set."""
    if DATA.is_file():
        with DATA.open(encoding="utf-8") as fh:
            texts = [row["text"] for row in csv.DictReader(fh) if 20 <= len(row["text"]) <= 140]
        return texts[:n]
    return (_FALLBACK * (n // len(_FALLBACK) + 1))[:n]


def checkpoint(size: str, labels: tuple[str, ...], name: str) -> Path:
    """A random-weight checkpoint of a production architecture, generated once and kept."""
    from serve_app.checkpoints import write_checkpoint

    path = REPO / "var" / "bench" / f"{name}-{size}"
    if not (path / "config.json").is_file():
        typer.echo(f"generating {path.relative_to(REPO)} (random weights, {size} size)")
        corpus = messages(5000) if DATA.is_file() else _FALLBACK
        write_checkpoint(path, labels, size=size, corpus=corpus)
    return path


def raw_throughput(path: Path, texts: list[str], seconds: float, threads: int = 2) -> float:
    """Texts per second of the model in-process, batches of 32, after a warm-up."""
    import torch

    from serve_app.config import ModelSpec
    from serve_app.models import load_predictor
    from serve_app.text import normalize

    torch.set_num_threads(threads)
    predictor = load_predictor("bench", ModelSpec(source=str(path), labels=EN_LABELS))
    batch = [normalize(t) for t in texts[:32]]
    predictor.predict(batch)
    done, start = 0, time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        chunk = [normalize(t) for t in texts[i : i + 32]] or batch
        predictor.predict(chunk)
        done += len(chunk)
        i = (i + 32) % max(1, len(texts) - 32)
    return done / (time.perf_counter() - start)


async def _load(url: str, texts: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            payload = {"text": texts[i % len(texts)], "language": "en"}
            headers = {"X-API-Key": BENCH_KEY}
            async with session.post(f"{url}/api/v1/emotion", json=payload, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
            i += concurrency

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(k, session) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "concurrency": concurrency,
        "tps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "errors": errors,
    }


def _deploy(en_path: Path, tiny: dict[str, Path], max_batch_size: int) -> None:
    from ray import serve

    from serve_app.app import bind_graph
    from serve_app.checkpoints import LABELS
    from serve_app.config import AppArgs, ModelSpec, ProtectionArgs

    models = {name: ModelSpec(source=str(tiny[name]), labels=LABELS[name]) for name in LABELS}
    models["en_emotion"] = ModelSpec(source=str(en_path), labels=EN_LABELS)
    # The cache is off (every request must reach the model) and the key is not rate-limited.
    protection = ProtectionArgs(cache_enabled=False, key_rate_per_minute=10**9)
    args = AppArgs(models=models, protection=protection)
    batch = {"max_batch_size": max_batch_size, "batch_wait_timeout_s": 0.005, "torch_threads": 2}
    options: dict[str, dict[str, Any]] = {
        "en_emotion": {
            "user_config": batch,
            "ray_actor_options": {"num_cpus": 1},
            "max_ongoing_requests": 64,
            "autoscaling_config": None,
            "num_replicas": 1,
        },
        # English-only load: the Italian models idle on a sliver, leaving the proxy, ingress
        # and router their share of the two cores.
        **{
            name: {"ray_actor_options": {"num_cpus": 0.1}}
            for name in ("it_emotion", "it_sentiment")
        },
    }
    serve.run(bind_graph(args, options), name="bench", route_prefix="/")


def run(seconds: float = 8.0, concurrencies: tuple[int, ...] = (1, 8, 32)) -> dict[str, Any]:
    import ray
    from ray import serve

    from serve_app.checkpoints import write_default_checkpoints

    texts = messages()
    en_path = checkpoint("distilroberta", EN_LABELS, "en_emotion")
    tiny = {p.name: p for p in write_default_checkpoints(REPO / "var" / "bench" / "tiny")}

    typer.echo(f"raw in-process, batch 32, {seconds:.0f}s ...")
    raw = raw_throughput(en_path, texts, seconds)
    typer.echo(f"  raw: {raw:.1f} texts/s")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # Deployments inherit the driver's environment: the bootstrap key lets the load in.
    os.environ["HAPPYKUBE_BOOTSTRAP_API_KEY"] = BENCH_KEY
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url = f"http://127.0.0.1:{port}"
        rows: dict[str, list[dict[str, Any]]] = {}
        for label, max_batch in (("batched", 32), ("unbatched", 1)):
            _deploy(en_path, tiny, max_batch)
            asyncio.run(_load(url, texts, 4, 2.0))  # warm-up
            rows[label] = []
            for c in concurrencies:
                row = asyncio.run(_load(url, texts, c, seconds))
                typer.echo(
                    f"  {label:9s} c={c:<3d} {row['tps']:7.1f} req/s  p50 {row['p50_ms']:.0f} ms"
                    f"  p99 {row['p99_ms']:.0f} ms  errors {row['errors']}"
                )
                rows[label].append(row)
    finally:
        serve.shutdown()
        ray.shutdown()
    top = max(concurrencies)
    batched = {r["concurrency"]: r for r in rows["batched"]}
    unbatched = {r["concurrency"]: r for r in rows["unbatched"]}
    return {
        "model": "en_emotion distilroberta-size, random weights",
        "raw_tps": raw,
        "e2e": rows["batched"],
        "unbatched": rows["unbatched"],
        "e2e_tps": batched[top]["tps"],
        "unbatched_tps": unbatched[top]["tps"],
        "e2e_over_raw": batched[top]["tps"] / raw,
        "batched_over_unbatched": batched[top]["tps"] / unbatched[top]["tps"],
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    """Throughput against concurrency: raw ceiling, batched and unbatched through Serve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, label, style in (
        ("e2e", "through Serve, batched", "o-"),
        ("unbatched", "through Serve, max batch 1", "s--"),
    ):
        xs = [r["concurrency"] for r in result[key]]
        ax.plot(xs, [r["tps"] for r in result[key]], style, label=label)
    ax.axhline(result["raw_tps"], color="grey", linestyle=":", label="raw in-process, batch 32")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("requests in flight")
    ax.set_ylabel("messages per second")
    ax.set_title(str(result["model"]), fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(seconds: float = 8.0) -> None:
    result = run(seconds)
    picture = plot(result, REPO / "var" / "bench" / "throughput.png")
    typer.echo(f"plot: {picture.relative_to(REPO)}")
    typer.echo("")
    typer.echo(
        f"{'path':10s} {'raw/s':>8s} {'e2e/s':>8s} {'unbatched/s':>12s} {'e2e/raw':>8s} "
        f"{'batched/unbatched':>18s}"
    )
    typer.echo(
        f"{'en_fp32':10s} {result['raw_tps']:8.1f} {result['e2e_tps']:8.1f} "
        f"{result['unbatched_tps']:12.1f} {result['e2e_over_raw']:8.2f} "
        f"{result['batched_over_unbatched']:18.2f}"
    )
    sys.stdout.write(json.dumps({"en_fp32": result}) + "\n")
