"""The RayService's serveConfigV2 is generated from serve_config.production.yaml, and a
config that Serve would silently misread never gets rendered."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kuberay.render import (
    RAYSERVICE,
    SERVE_CONFIG,
    ServeConfigError,
    check_serve_config,
    load_serve_config,
    render,
    replace_block,
    unknown_keys,
)
from serve_app.cli import app


@pytest.fixture
def config() -> dict[str, Any]:
    return copy.deepcopy(load_serve_config(SERVE_CONFIG))


def _deployment(config: dict[str, Any], name: str) -> dict[str, Any]:
    (dep,) = [d for d in config["applications"][0]["deployments"] if d["name"] == name]
    return dep


def test_committed_rayservice_matches_the_production_serve_config() -> None:
    """Drift guard: edit serve_config.production.yaml, then `happykube kuberay render`."""
    result = render()
    assert not result.drifted, result.diff()


def test_serve_config_v2_in_the_manifest_equals_the_serve_config() -> None:
    manifest = yaml.safe_load(RAYSERVICE.read_text(encoding="utf-8"))
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert embedded == load_serve_config(SERVE_CONFIG)


def test_production_config_passes_every_check(config: dict[str, Any]) -> None:
    check_serve_config(config)
    assert unknown_keys(config) == []


def test_retired_autoscaling_key_is_reported_with_its_path(config: dict[str, Any]) -> None:
    """Serve ignores `target_num_ongoing_requests_per_replica` today; we refuse it."""
    auto = _deployment(config, "it_emotion")["autoscaling_config"]
    auto["target_num_ongoing_requests_per_replica"] = 5
    problems = unknown_keys(config)
    assert len(problems) == 1
    assert "applications[0].deployments[2].autoscaling_config" in problems[0]
    assert "target_num_ongoing_requests_per_replica" in problems[0]
    with pytest.raises(ServeConfigError):
        check_serve_config(config)


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ("top", "proxy_locaton"),
        ("http_options", "hots"),
        ("deployment", "num_replica"),
        ("ray_actor_options", "num_cpu"),
    ],
)
def test_misspelt_keys_anywhere_are_unknown(config: dict[str, Any], where: str, key: str) -> None:
    dep = _deployment(config, "Ingress")
    target = {
        "top": config,
        "http_options": config["http_options"],
        "deployment": dep,
        "ray_actor_options": dep["ray_actor_options"],
    }[where]
    target[key] = 1
    assert any(key in p for p in unknown_keys(config))


def test_values_ray_rejects_are_reported(config: dict[str, Any]) -> None:
    _deployment(config, "Ingress")["num_replicas"] = -1
    with pytest.raises(ServeConfigError, match="ServeDeploySchema"):
        check_serve_config(config)


def test_deployment_names_the_app_does_not_bind_are_reported(config: dict[str, Any]) -> None:
    _deployment(config, "LanguageRouter")["name"] = "Router"
    with pytest.raises(ServeConfigError, match="no deployment named 'Router'"):
        check_serve_config(config)


def test_app_args_and_user_config_are_validated(config: dict[str, Any]) -> None:
    config["applications"][0]["args"]["max_text_chars"] = 0
    _deployment(config, "en_emotion")["user_config"]["max_batch"] = 8
    with pytest.raises(ServeConfigError) as caught:
        check_serve_config(config)
    text = "\n".join(caught.value.problems)
    assert "args" in text
    assert "en_emotion" in text
    assert "max_batch" in text


def test_replace_block_keeps_everything_around_the_block() -> None:
    manifest = (
        "# header stays\n"
        "spec:\n"
        "  serveConfigV2: |\n"
        "    old: 1\n"
        "\n"
        "    still_old: 2\n"
        "\n"
        "  rayClusterConfig:  # trailing comment stays\n"
        "    rayVersion: '2.60.0'\n"
    )
    out = replace_block(manifest, "new: 1\nlist:\n- a\n")
    assert out == (
        "# header stays\n"
        "spec:\n"
        "  serveConfigV2: |\n"
        "    new: 1\n"
        "    list:\n"
        "    - a\n"
        "\n"
        "  rayClusterConfig:  # trailing comment stays\n"
        "    rayVersion: '2.60.0'\n"
    )
    assert yaml.safe_load(out)["spec"]["serveConfigV2"] == "new: 1\nlist:\n- a\n"


def test_replace_block_needs_a_block() -> None:
    with pytest.raises(ServeConfigError):
        replace_block("spec:\n  serveConfigV2: {}\n", "a: 1\n")


def _copy_inputs(tmp_path: Path) -> tuple[Path, Path]:
    serve = tmp_path / "serve.yaml"
    manifest = tmp_path / "rayservice.yaml"
    serve.write_text(SERVE_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    manifest.write_text(RAYSERVICE.read_text(encoding="utf-8"), encoding="utf-8")
    return serve, manifest


def test_cli_check_fails_on_drift_and_render_repairs_it(tmp_path: Path) -> None:
    serve, manifest = _copy_inputs(tmp_path)
    serve.write_text(
        serve.read_text(encoding="utf-8").replace("max_text_chars: 2000", "max_text_chars: 1500"),
        encoding="utf-8",
    )
    args = ["kuberay", "render", "--serve-config", str(serve), "--manifest", str(manifest)]
    runner = CliRunner()

    drifted = runner.invoke(app, [*args, "--check"])
    assert drifted.exit_code == 1
    assert "max_text_chars: 1500" in drifted.output

    assert runner.invoke(app, args).exit_code == 0
    assert "max_text_chars: 1500" in manifest.read_text(encoding="utf-8")
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0


def test_cli_refuses_to_render_a_config_serve_would_misread(tmp_path: Path) -> None:
    serve, manifest = _copy_inputs(tmp_path)
    before = manifest.read_text(encoding="utf-8")
    serve.write_text(
        serve.read_text(encoding="utf-8").replace(
            "target_ongoing_requests: 24", "target_num_ongoing_requests_per_replica: 24"
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app, ["kuberay", "render", "--serve-config", str(serve), "--manifest", str(manifest)]
    )
    assert result.exit_code == 2
    assert "target_num_ongoing_requests_per_replica" in result.output
    assert manifest.read_text(encoding="utf-8") == before
