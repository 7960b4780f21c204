"""The public CI workflow does what `.ci/run` does, against the same services, and builds
the image."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from kuberay.render import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
CI_RUN = REPO_ROOT / ".ci" / "run"


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return data


def _commands(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_triggers_on_pushes_and_pull_requests() -> None:
    # YAML 1.1 reads the bare key `on` as True.
    triggers = _workflow().get("on", _workflow().get(True))
    assert {"push", "pull_request"} <= set(triggers)


def test_tests_run_against_postgres_and_redis_service_containers() -> None:
    job = _workflow()["jobs"]["test"]
    services = job["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "5432:5432" in services["postgres"]["ports"]
    assert services["redis"]["image"].startswith("redis:")
    assert "6379:6379" in services["redis"]["ports"]
    assert "--health-cmd" in services["postgres"]["options"]


MAKEFILE = REPO_ROOT / "Makefile"
TOOLS = re.compile(
    r"\b(ruff check|ruff format --check|mypy|pytest|happykube kuberay \w+|\.ci/audit)\b"
)


def _make_targets() -> dict[str, tuple[list[str], list[str]]]:
    """Makefile target -> (prerequisites, recipe lines)."""
    targets: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in MAKEFILE.read_text(encoding="utf-8").splitlines():
        rule = re.match(r"^([\w-]+):(?!=)(.*)$", line)
        if rule:
            current = rule[1]
            targets[current] = (rule[2].split(), [])
        elif line.startswith("\t") and current:
            targets[current][1].append(line.strip())
    return targets


def _expand(commands: str) -> str:
    """`commands` with every `make TARGET` replaced by what that target runs."""
    targets = _make_targets() if MAKEFILE.exists() else {}

    def target(name: str, seen: set[str]) -> list[str]:
        if name in seen or name not in targets:
            return []
        seen.add(name)
        prereqs, recipe = targets[name]
        return [line for p in prereqs for line in target(p, seen)] + recipe

    out = []
    for line in commands.splitlines():
        called = re.findall(r"\bmake ([\w-]+)", line)
        out += [x for name in called for x in target(name, set())] or [line]
    return "\n".join(out)


def test_workflow_lints_types_checks_manifests_and_tests() -> None:
    commands = _expand(_commands(_workflow()["jobs"]["test"]))
    for needed in (
        "ruff check",
        "ruff format --check",
        "mypy",
        "happykube kuberay render --check",
        "happykube kuberay validate",
        "pytest",
        "--require-hashes",
        "-r requirements.lock",
        "bash .ci/audit",
        "../shared/kuberay/crds",
    ):
        assert needed in commands, needed


def test_image_job_lints_and_builds_the_dockerfile() -> None:
    steps = _workflow()["jobs"]["image"]["steps"]
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("hadolint/hadolint-action@") for u in uses)
    (build,) = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action@")]
    assert build["with"]["push"] is False


def test_image_job_runs_the_commands_the_manifests_run() -> None:
    """The image job does not stop at the build: each command the pods run must start."""
    job = _workflow()["jobs"]["image"]
    commands = _commands(job)
    for needed in (
        "happykube --help",
        "happykube bot --help",
        "from serve_app.app import build_app",
        "command -v wget",
        "happykube db upgrade",
    ):
        assert needed in commands, needed
    assert job["services"]["postgres"]["image"].startswith("postgres:")


def test_workflow_mirrors_what_ci_run_runs() -> None:
    """Every check `.ci/run` runs (through the Makefile) the workflow runs too."""
    if not CI_RUN.exists():
        pytest.skip(".ci/run is not written yet; this check starts once it exists")
    local = set(TOOLS.findall(_expand(CI_RUN.read_text(encoding="utf-8"))))
    assert {"ruff check", "mypy", "pytest"} <= local, "expanding .ci/run found no checks"
    public = set(TOOLS.findall(_expand(_commands(_workflow()["jobs"]["test"]))))
    assert local <= public, f"the workflow misses {sorted(local - public)}"
