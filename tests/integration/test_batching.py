"""One TextClassifier deployment under real Ray Serve: batching and live retuning."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import serve

from serve_app.classifier import TextClassifier
from serve_app.config import ModelSpec

APP = "batching-test"


def _deploy(tiny_checkpoints: dict[str, Path], **user_config: Any) -> Any:
    spec = ModelSpec(source=str(tiny_checkpoints["it_sentiment"]), labels=("negative", "positive"))
    config = {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "torch_threads": 1}
    config.update(user_config)
    app = TextClassifier.options(name="clf", user_config=config).bind("it_sentiment", spec)
    return serve.run(app, name=APP, route_prefix=None)


@pytest.fixture
def classifier(ray_local: None, tiny_checkpoints: dict[str, Path]) -> Iterator[Any]:
    yield _deploy(tiny_checkpoints)
    serve.delete(APP)


async def test_concurrent_requests_share_forward_passes(classifier: Any) -> None:
    answers = await asyncio.gather(
        *(classifier.classify.remote([f"messaggio numero {i}"]) for i in range(24))
    )
    assert all(len(a) == 1 and len(a[0]) == 2 for a in answers)
    batches = (await classifier.batch_stats.remote())["recent_batches"]
    assert sum(batches) >= 24
    assert max(batches) <= 8
    assert max(batches) > 1, f"no batching happened: {batches}"


async def test_reconfigure_retunes_batching_live(
    classifier: Any, tiny_checkpoints: dict[str, Path]
) -> None:
    before = await classifier.batch_stats.remote()
    handle = _deploy(tiny_checkpoints, max_batch_size=2)
    after = await handle.batch_stats.remote()
    assert after["max_batch_size"] == 2
    # Same replica, retuned in place: its history of batches survived the change.
    assert after["recent_batches"][: len(before["recent_batches"])] == before["recent_batches"]
    await asyncio.gather(*(handle.classify.remote([f"t{i}"]) for i in range(10)))
    new = (await handle.batch_stats.remote())["recent_batches"][len(after["recent_batches"]) :]
    assert new and max(new) <= 2


async def test_a_request_with_many_texts_gets_its_own_rows(classifier: Any) -> None:
    one, three = await asyncio.gather(
        classifier.classify.remote(["uno"]), classifier.classify.remote(["a", "bb", "ccc"])
    )
    assert len(one) == 1 and len(three) == 3
    alone = await classifier.classify.remote(["bb"])
    assert np.allclose(three[1], alone[0], atol=1e-5)
