"""GPU, planned and ready: the `device`/`precision` knobs, the GPU serve config and overlay,
and the clear failure of `device: cuda` where no GPU is visible (all checked on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from kuberay.render import load_serve_config, render
from kuberay.validate import TARGETS, kustomize
from serve_app.config import AppArgs, ModelSpec
from serve_app.errors import ModelLoadError
from serve_app.models import load_predictor

REPO = Path(__file__).resolve().parents[2]
GPU_CONFIG = REPO / "serve_config.production-gpu.yaml"
GPU_PATCH = REPO / "kuberay" / "components" / "gpu" / "rayservice.yaml"
MODELS = {"it_emotion", "it_sentiment", "en_emotion"}
IT_EMOTION = ("anger", "fear", "joy", "sadness")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_cuda_without_a_gpu_fails_at_load_naming_the_model(
    tiny_checkpoints: dict[str, Path],
) -> None:
    """No silent fallback to the CPU: the replica's load fails with the model, the torch build
    and what to do."""
    spec = ModelSpec(
        source=str(tiny_checkpoints["it_emotion"]),
        labels=IT_EMOTION,
        device="cuda",
        precision="fp16",
    )
    with pytest.raises(ModelLoadError, match=r"'it_emotion'.*`device: cuda` but no CUDA GPU"):
        load_predictor("it_emotion", spec)


@pytest.mark.parametrize(
    ("device", "precision", "message"),
    [
        ("cpu", "fp16", "needs `device: cuda`"),
        ("cpu", "bf16", "needs `device: cuda`"),
        ("cuda", "int8", "int8 is CPU-only"),
    ],
)
def test_precision_must_fit_the_device(device: str, precision: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelSpec(source="./x", labels=("a", "b"), device=device, precision=precision)


def test_only_transformers_checkpoints_go_to_the_gpu() -> None:
    with pytest.raises(ValueError, match="needs kind transformers"):
        ModelSpec(source="./x", labels=("a", "b"), kind="linear", device="cuda")


def test_gpu_config_puts_every_model_on_cuda_with_a_fraction_of_a_gpu() -> None:
    """Half precision on CUDA, fractional `num_gpus`, the API deployments unchanged."""
    config = load_serve_config(GPU_CONFIG)
    (app,) = config["applications"]
    args = AppArgs.model_validate(app["args"])
    assert {name for name, m in args.models.items() if m.device == "cuda"} == MODELS
    assert {m.precision for m in args.models.values()} <= {"fp16", "bf16"}
    for dep in app["deployments"]:
        gpus = dep["ray_actor_options"].get("num_gpus", 0)
        if dep["name"] in MODELS:
            assert 0 < gpus < 1
            assert dep["max_ongoing_requests"] >= dep["user_config"]["max_batch_size"]
        else:
            assert gpus == 0
    cpu = yaml.safe_load((REPO / "serve_config.production.yaml").read_text())
    api = {d["name"]: d for d in cpu["applications"][0]["deployments"]}
    for dep in app["deployments"]:
        if dep["name"] not in MODELS:
            assert dep == api[dep["name"]]


def test_gpu_component_serve_config_is_rendered_from_the_gpu_config() -> None:
    assert not render(GPU_CONFIG, GPU_PATCH).drifted, (
        "run `happykube kuberay render --serve-config serve_config.production-gpu.yaml"
        " --manifest kuberay/components/gpu/rayservice.yaml`"
    )


def test_production_gpu_overlay_gives_the_model_workers_one_gpu_each() -> None:
    """The model worker group requests and limits one `nvidia.com/gpu`, tells Ray so, runs
    the CUDA image on GPU nodes, and its Serve config is the GPU one; the rest is production."""
    (service,) = [d for d in kustomize(TARGETS["production-gpu"]) if d["kind"] == "RayService"]
    groups = {g["groupName"]: g for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    models, api = groups["models"], groups["api"]
    container = models["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert models["rayStartParams"]["num-gpus"] == "1"
    assert container["image"].endswith("-gpu")
    assert models["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nvidia.com/gpu" not in api["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert not api["template"]["spec"]["containers"][0]["image"].endswith("-gpu")
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve == load_serve_config(GPU_CONFIG)


def test_dockerfile_has_a_cuda_target_and_still_builds_the_cpu_image_by_default() -> None:
    lines = (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
    froms = [ln.split() for ln in lines if ln.startswith("FROM ")]
    assert ["FROM", "runtime", "AS", "gpu"] in froms
    assert froms[-1] == ["FROM", "runtime", "AS", "cpu"]
    assert any("whl/cu" in ln for ln in lines)
