"""Both serve configs pass Ray's own schema and our AppArgs, with no unknown keys."""

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app import registry
from serve_app.config import AppArgs

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["serve_config.yaml", "serve_config.production.yaml"]
DEPLOYMENTS = {"Ingress", "LanguageRouter", *registry.REQUIRED}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_valid_for_ray_and_for_the_app(name: str) -> None:
    raw = yaml.safe_load((REPO / name).read_text())
    schema = (
        ServeDeploySchema.model_validate(raw)
        if hasattr(ServeDeploySchema, "model_validate")
        else ServeDeploySchema.parse_obj(raw)
    )
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    args = AppArgs.model_validate(app.args)
    assert set(args.models) >= set(registry.REQUIRED)
    assert {d["name"] for d in raw["applications"][0]["deployments"]} == DEPLOYMENTS


@pytest.mark.parametrize("name", CONFIGS)
def test_model_deployments_can_fill_their_batches(name: str) -> None:
    """max_ongoing_requests must not cap a batch below max_batch_size (Serve's default is 5)."""
    raw = yaml.safe_load((REPO / name).read_text())
    for dep in raw["applications"][0]["deployments"]:
        if dep["name"] in registry.NAMES:
            assert dep["max_ongoing_requests"] >= dep["user_config"]["max_batch_size"]
            assert dep["ray_actor_options"]["num_cpus"] > 0
            assert dep["user_config"]["torch_threads"] >= 1
            assert "autoscaling_config" in dep


def test_the_local_config_stays_on_loopback() -> None:
    raw = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    assert raw["http_options"]["host"] == "127.0.0.1"
    assert raw["http_options"]["port"] == 8000
