"""Serve autoscaling seen working: one model deployment goes from 1 to 2 replicas under load
and back to 1 when the load stops, the count read from Serve's status API (serve.status())."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray import serve

from bench.scaling import APP, deploy, running_replicas, watch_scaling


@pytest.fixture
def classifier(ray_local: None, tiny_checkpoints: dict[str, Path]) -> Iterator[Any]:
    yield deploy(str(tiny_checkpoints["it_sentiment"]), ("negative", "positive"))
    serve.delete(APP)


async def test_load_scales_a_model_to_two_replicas_and_idle_back_to_one(
    classifier: Any,
) -> None:
    assert running_replicas() == 1
    timeline = await watch_scaling(classifier, timeout_s=120)
    print("\n" + "\n".join(timeline.lines()))
    events = timeline.events
    assert "replica up" in events, f"never scaled up: {[s.replicas for s in timeline.samples]}"
    assert "replica down" in events, f"never scaled down: {timeline.samples[-5:]}"
    assert events["load start"] < events["replica up"] <= events["load stop"]
    assert events["load stop"] < events["replica down"]
    assert max(s.replicas for s in timeline.samples) == 2
    assert running_replicas() == 1
