"""A real two-node Ray cluster on this machine keeps answering while its worker node is
killed and started again (testing/multinode.py; what a KubeRay worker pod's loss looks like).

Slow (several minutes on 2 cores) and heavy; uses its own ports (GCS 6390, dashboard 8266,
Serve 8100) so it never meets another Ray cluster on the machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kuberay.render import REPO_ROOT
from serve_app.registry import LABELS
from testing.checkpoints import write_default_checkpoints
from testing.multinode import kill_leftovers, run_demo

CONFIG = REPO_ROOT / "serve_config.yaml"


@pytest.fixture
def checkpoints() -> Iterator[None]:
    """The local serve config's tiny checkpoints, generated if this checkout has none."""
    if not all((REPO_ROOT / "var" / "checkpoints" / m).is_dir() for m in LABELS):
        write_default_checkpoints(str(REPO_ROOT / "var" / "checkpoints"), size="tiny")
    yield
    # The demo cleans up after itself; this catches a run interrupted half-way.
    assert kill_leftovers() == 0, "processes of the multi-node cluster outlived the run"


def test_serving_survives_losing_and_regaining_a_worker_node(
    checkpoints: None, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_demo(config=CONFIG, max_requests=400, outage_s=25.0)
    out = capsys.readouterr().out
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed == json.loads(report.as_json())

    assert report.ok, report.reasons
    every = ["Ingress", "LanguageRouter", "it_emotion", "it_sentiment", "en_emotion"]
    for placement in (report.placement_before, report.placement_after):
        assert sorted(placement) == sorted(every)
        assert all(roles == ["head", "worker"] for roles in placement.values())
    phases = {p["name"]: p for p in printed["phases"]}
    assert phases["before"]["failed"] == 0
    assert phases["outage"]["served"] > 0
    assert phases["after"]["failed"] == 0 and phases["after"]["served"] > 0
