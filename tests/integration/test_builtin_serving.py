"""The shipped built-in models, served by the local default config through real Ray Serve."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO, wait_ready
from tests.integration.test_builtin_models import CLEAR

PREFIX = "/builtin"


@pytest.fixture(scope="module")
def builtin_url(serve_url: str) -> Iterator[str]:
    """serve_config.yaml's application as shipped, beside the tiny one, under /builtin."""
    from ray import serve

    from serve_app.app import bind_graph
    from serve_app.config import AppArgs

    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    args = AppArgs.model_validate(app["args"])
    options: dict[str, dict[str, Any]] = {
        d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app["deployments"]
    }
    serve.run(bind_graph(args, options), name="builtin", route_prefix=PREFIX)
    url = serve_url + PREFIX
    wait_ready(url)
    yield url
    serve.delete("builtin")


def test_builtin_models_answer_clear_sentences(
    builtin_url: str, api_headers: dict[str, str]
) -> None:
    """At least 80% of unmistakable sentences get the right emotion and sentiment."""
    cases = [(text, label, "emotion") for text, label in CLEAR["en_emotion"]]
    cases += [(text, label, "emotion") for text, label in CLEAR["it_emotion"]]
    cases += [(text, label, "sentiment") for text, label in CLEAR["it_sentiment"]]
    texts = [text for text, _, _ in cases]
    r = httpx.post(
        f"{builtin_url}/api/v1/emotion/batch",
        json={"texts": texts},
        headers=api_headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    right = sum(
        item["result"] is not None and item["result"][field] == label
        for item, (_, label, field) in zip(results, cases, strict=True)
    )
    assert right / len(cases) >= 0.8, f"{right}/{len(cases)} right"


def test_builtin_models_report_their_revisions(
    builtin_url: str, api_headers: dict[str, str]
) -> None:
    r = httpx.post(
        f"{builtin_url}/api/v1/emotion",
        json={"text": "Che paura, domani ho l'esame"},
        headers=api_headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    models = {m["name"]: m["revision"] for m in r.json()["models"]}
    assert set(models) == {"it_emotion", "it_sentiment"}
    assert all(rev and rev != "local" for rev in models.values())
