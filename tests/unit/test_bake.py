"""The image bake (kuberay/bake.py) refuses what would only fail later in a pod: moving
revisions and snapshots without safetensors weights. Snapshots are tiny folders written
here; the hub download is the one thing replaced."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from kuberay import bake

SHA = "0123456789abcdef0123456789abcdef01234567"


def _config(**revisions: str) -> dict[str, Any]:
    models = {
        f"m{i}": {"source": source, "revision": rev, "labels": ["a", "b"]}
        for i, (source, rev) in enumerate(revisions.items())
    }
    return {"applications": [{"args": {"models": models}}]}


@pytest.fixture
def hub(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> dict[str, Path]:
    """Repo id -> snapshot folder that `snapshot_download` answers with."""
    import huggingface_hub

    good = tmp_path / "good"
    shutil.copytree(tiny_checkpoints["it_sentiment"], good)
    pickled = tmp_path / "pickled"
    shutil.copytree(good, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    snapshots = {"org/good": good, "org/pickled": pickled, "org/empty": tmp_path / "empty"}
    (tmp_path / "empty").mkdir()
    calls: list[str] = []

    def snapshot_download(repo_id: str, revision: str, allow_patterns: list[str]) -> str:
        calls.append(repo_id)
        return str(snapshots[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(bake, "_CALLS", calls, raising=False)
    return snapshots


def test_a_pinned_model_with_safetensors_bakes(hub: dict[str, Path]) -> None:
    assert any(hub["org/good"].glob("*.safetensors"))
    assert bake.bake(_config(**{"org/good": SHA})) == []


def test_pickled_weights_are_refused_with_what_to_do(hub: dict[str, Path]) -> None:
    (problem,) = bake.bake(_config(**{"org/pickled": SHA}))
    assert problem.startswith("org/pickled: no *.safetensors weights")
    assert "convert it to safetensors" in problem


def test_every_model_is_checked_not_only_the_first(hub: dict[str, Path]) -> None:
    problems = bake.bake(_config(**{"org/good": SHA, "org/pickled": SHA, "org/empty": SHA}))
    assert {p.split(":")[0] for p in problems} == {"org/pickled", "org/empty"}
    assert any("no config.json" in p for p in problems)


def test_moving_revisions_are_refused_before_any_download(hub: dict[str, Path]) -> None:
    (problem,) = bake.bake(_config(**{"org/good": "main"}))
    assert problem == "org/good: revision 'main' is not a 40-hex commit sha"
    assert bake._CALLS == []  # type: ignore[attr-defined]
    assert bake.bake(_config(**{"org/good": "main"}), allow_unpinned=True) == []


def test_the_command_exits_non_zero_with_one_line_per_problem(
    hub: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(_config(**{"org/pickled": SHA, "org/good": "v1.0"})))
    assert bake.main([str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: org/") for line in lines)


def test_the_committed_production_config_is_refused_until_pinned(hub: dict[str, Path]) -> None:
    from kuberay.render import SERVE_CONFIG, load_serve_config

    problems = bake.bake(load_serve_config(SERVE_CONFIG))
    assert len(problems) == 3
    assert all("is not a 40-hex commit sha" in p for p in problems)
