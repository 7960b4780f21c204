"""Autoscaling, watched: one model deployment driven by load until Serve adds a replica, then
left idle until Serve takes it away, with the replica count read from Serve's own status API
(`serve.status()`) and the throughput sampled on the same clock.

`happykube bench --scaling` runs it on a fresh local Ray with a tiny checkpoint, prints the
timeline and draws bench/results/scaling.png; tests/integration/test_autoscaling.py runs the
same `watch_scaling` under the suite's Ray and asserts the 1 -> 2 -> 1 path.

The delays are short on purpose (seconds, not serve_config.yaml's defaults of 30 s up and
10 minutes down): the shape is what is shown, not the production timing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP = "scaling-bench"
DEPLOYMENT = "clf"

# Short delays so the whole 1 -> 2 -> 1 cycle fits in well under a minute; the batch wait
# keeps each request in the replica ~0.2 s, so a few concurrent callers hold the ongoing
# count far above the target of 2 while the tiny model itself stays cheap on 2 cores.
AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "initial_replicas": 1,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 1.0,
    "downscale_delay_s": 3.0,
    "look_back_period_s": 2.0,
    "metrics_interval_s": 0.5,
}
USER_CONFIG = {"max_batch_size": 64, "batch_wait_timeout_s": 0.2, "torch_threads": 1}


@dataclass
class Sample:
    t: float  # seconds since the load started
    replicas: int  # RUNNING replicas, as serve.status() reports them
    throughput: float  # requests answered per second since the previous sample


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)  # name -> seconds since load start

    def lines(self) -> list[str]:
        order = ("load start", "replica up", "load stop", "replica down")
        return [
            f"{name:>12}: t={self.events[name]:6.1f} s" for name in order if name in self.events
        ]


def deploy(source: str, labels: tuple[str, ...], name: str = "it_sentiment") -> Any:
    """One TextClassifier with the short autoscaling config; returns its handle."""
    from ray import serve

    from serve_app.classifier import TextClassifier
    from serve_app.config import ModelSpec

    spec = ModelSpec(source=source, labels=labels)
    app = TextClassifier.options(
        name=DEPLOYMENT,
        num_replicas="auto",
        autoscaling_config=AUTOSCALING,
        user_config=USER_CONFIG,
        ray_actor_options={"num_cpus": 0.5},
    ).bind(name, spec)
    return serve.run(app, name=APP, route_prefix=None)


def running_replicas(app: str = APP, deployment: str = DEPLOYMENT) -> int:
    """RUNNING replicas of one deployment, from Serve's status API."""
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


async def watch_scaling(
    handle: Any,
    *,
    concurrency: int = 16,
    hold_s: float = 3.0,
    timeout_s: float = 90.0,
    period_s: float = 0.5,
) -> Timeline:
    """Drive `handle` with `concurrency` callers until a second replica runs (then `hold_s`
    more, to see the throughput at two), stop, and sample until one replica is left."""
    timeline = Timeline()
    answered = 0
    loading = True

    async def caller(i: int) -> None:
        nonlocal answered
        n = 0
        while loading:
            await handle.classify.remote([f"messaggio {i} numero {n}"])
            answered += 1
            n += 1

    start = time.monotonic()
    timeline.events["load start"] = 0.0
    callers = [asyncio.create_task(caller(i)) for i in range(concurrency)]
    last_t, last_answered = 0.0, 0
    try:
        while time.monotonic() - start < timeout_s:
            await asyncio.sleep(period_s)
            replicas = await asyncio.to_thread(running_replicas)
            t = time.monotonic() - start
            timeline.samples.append(
                Sample(t, replicas, (answered - last_answered) / max(t - last_t, 1e-9))
            )
            last_t, last_answered = t, answered
            events = timeline.events
            if replicas >= 2 and "replica up" not in events:
                events["replica up"] = t
            if loading and "replica up" in events and t - events["replica up"] >= hold_s:
                loading = False
                events["load stop"] = t
            if not loading and replicas == 1 and t > events["load stop"]:
                events["replica down"] = t
                break
    finally:
        loading = False
        await asyncio.gather(*callers, return_exceptions=True)
    return timeline


def plot(timeline: Timeline, path: Path) -> Path:
    """Replicas and throughput over time, the timeline's events as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in timeline.samples]
    fig, left = plt.subplots(figsize=(8, 4))
    left.step(t, [s.replicas for s in timeline.samples], where="post", color="tab:blue")
    left.set_ylabel("RUNNING replicas (serve.status)", color="tab:blue")
    left.set_ylim(0, 3)
    left.set_xlabel("seconds since load start")
    right = left.twinx()
    right.plot(t, [s.throughput for s in timeline.samples], color="tab:orange")
    right.set_ylabel("requests / s", color="tab:orange")
    for name, when in timeline.events.items():
        left.axvline(when, color="grey", linestyle=":")
        left.annotate(name, (when, 2.8), rotation=90, va="top", fontsize=8)
    left.set_title("One model deployment under load: Serve autoscaling 1 -> 2 -> 1")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(out: Path = Path("bench/results/scaling.png")) -> Timeline:
    """A fresh local Ray, a tiny checkpoint, one scaling cycle: print it and draw it."""
    import tempfile

    import ray
    from ray import serve

    from testing.checkpoints import write_default_checkpoints

    with tempfile.TemporaryDirectory() as tmp:
        paths = {p.name: p for p in write_default_checkpoints(Path(tmp), size="tiny")}
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        try:
            handle = deploy(str(paths["it_sentiment"]), ("negative", "positive"))
            timeline = asyncio.run(watch_scaling(handle))
        finally:
            serve.shutdown()
            ray.shutdown()
    print("autoscaling timeline (one deployment, 16 concurrent callers):")
    for line in timeline.lines():
        print(" ", line)
    peak = max((s.throughput for s in timeline.samples), default=0.0)
    print(f"  peak throughput {peak:.0f} req/s; chart: {plot(timeline, out)}")
    return timeline
