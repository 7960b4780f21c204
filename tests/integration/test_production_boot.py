"""The production overlay, booted on this machine in production mode.

Rendered with `kubectl kustomize`; each Ray node gets the environment its pod would get
(ConfigMap plus generated Secret values, `kuberay.environment`), pointed at a fresh local
PostgreSQL database and a private Redis. The serve config is the overlay's serveConfigV2
with the hub model ids swapped for tiny local checkpoints of the same labels; the other
changes are what one machine needs (a free HTTP port and one proxy, on the head, instead of
a proxy per pod on port 8000). It must become ready, answer an analysis and store it; an
`api` pod restarted without one required secret must refuse, naming the variable.

About 2-3 minutes on 2 shared cores (a four-node Ray cluster, seven model replicas).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from kuberay.environment import container_env, generated_secrets, ray_containers
from kuberay.validate import TARGETS, kustomize
from tests.conftest import REPO, wait_ready
from tests.integration.history_env import fresh_database

TIMEOUT_S = 300.0


def _base_env() -> dict[str, str]:
    """What any container has before the manifests add to it: nothing of the app's."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = str(REPO)  # the image's site-packages
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from tests.redis_server import RedisServer

    server = RedisServer()
    server.start()
    yield server.url
    server.stop()


def _role_envs(
    docs: list[dict[str, Any]], secrets: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    rayservice = next(d for d in docs if d["kind"] == "RayService")
    return {
        role: container_env(docs, container, secrets)
        for role, container in ray_containers(rayservice).items()
    }


def _nodes(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per worker group: its custom resources and the CPUs of one pod (two models pods:
    the fewest that hold two replicas per model with max_replicas_per_node 1)."""
    groups = {g["groupName"]: g for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    out = {}
    for role, count in (("api", 1), ("models", 2)):
        group = groups[role]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        out[role] = {
            "count": count,
            "num_cpus": float(limits["cpu"]) if role == "api" else 6.0,
            "resources": {k: float(v) for k, v in group["resources"].items()},
        }
    return out


def test_production_overlay_boots_answers_stores_and_refuses_a_missing_secret(
    tmp_path: Path, tiny_checkpoints: dict[str, Path], database: str, redis_url: str
) -> None:
    docs = kustomize(TARGETS["production"])
    rayservice = next(d for d in docs if d["kind"] == "RayService")
    secrets = generated_secrets({"DATABASE_URL": database, "REDIS_URL": redis_url})
    envs = {role: {**_base_env(), **env} for role, env in _role_envs(docs, secrets).items()}
    assert {env["HAPPYKUBE_ENVIRONMENT"] for env in envs.values()} == {"production"}
    assert "DATABASE_URL" not in envs["head"] and "DATABASE_URL" not in envs["models"]

    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    for name, spec in config["applications"][0]["args"]["models"].items():
        spec["source"] = str(tiny_checkpoints[name])
    config["proxy_location"] = "HeadOnly"
    # The operator's key, created as from an api pod: production refuses a bootstrap key.
    key = subprocess.run(
        [sys.executable, "-m", "serve_app.cli", "keys", "create", "--client", "boot-test",
         "--name", "boot-test-1", "--scopes", "emotion:write,history:write"],
        env=envs["api"], cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip

    spec_path = tmp_path / "spec.json"
    spec_path.write_text(
        json.dumps(
            {"envs": envs, "nodes": _nodes(rayservice), "config": config, "timeout_s": TIMEOUT_S}
        )
    )
    # Its own Ray temp dir (short: Ray's socket paths must fit 107 bytes), so this cluster's
    # address never replaces the machine's default one in /tmp/ray.
    ray_tmp = tempfile.mkdtemp(prefix="hk-boot-", dir="/tmp")
    boot = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.production_boot", str(spec_path)],
        cwd=REPO,
        env={**_base_env(), "RAY_TMPDIR": ray_tmp},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert boot.stdin is not None and boot.stdout is not None

    def event() -> dict[str, Any]:
        """The boot process's next JSON event (Ray may print other lines)."""
        while line := boot.stdout.readline():  # type: ignore[union-attr]
            if line.startswith("{"):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
        raise AssertionError(f"the boot process ended (exit {boot.wait()})")

    try:
        url = event()["url"]
        status = event()
        print(f"boot: RUNNING after {status['t']} s")
        assert status["status"] == "RUNNING", status["message"]
        wait_ready(url, timeout_s=TIMEOUT_S)
        user_id = "123456789012"
        answer = httpx.post(
            f"{url}/api/v1/emotion",
            json={"text": "Oggi sono davvero felice!", "user_id": user_id},
            headers={"X-API-Key": key},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] is True
        with psycopg.connect(database) as conn:
            row = conn.execute("SELECT count(*) FROM emotion_records").fetchone()
        assert row is not None and row[0] == 1

        without = {k: v for k, v in envs["api"].items() if k != "HAPPYKUBE_USER_PEPPER"}
        boot.stdin.write(json.dumps({"do": "restart_api", "env": without}) + "\n")
        boot.stdin.flush()
        refused = event()
        print(f"boot: refusal seen at {refused['t']} s")
        lines = [
            ln
            for ln in refused["message"].splitlines()
            if "ProductionConfigError: refusing to start in production:" in ln
        ]
        assert lines, refused
        assert lines[-1].endswith(
            "refusing to start in production: HAPPYKUBE_USER_PEPPER is missing"
        )
        assert secrets["happykube-app"]["HAPPYKUBE_API_KEY_PEPPER"] not in refused["message"]
        boot.stdin.write(json.dumps({"do": "stop"}) + "\n")
        boot.stdin.flush()
        assert boot.wait(timeout=120) == 0
    finally:
        if boot.poll() is None:
            boot.kill()
            boot.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
