"""What a first week on a real cluster would trip over, checked on the rendered overlays
(`kubectl kustomize`): production mode, who holds which secret, drains, TLS issuance,
worker counts, model spread, the two Redis roles, metrics and the bot's settings."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberay.environment import (
    container_env,
    generated_secrets,
    ray_containers,
    secret_refs,
    secret_templates,
)
from kuberay.render import REPO_ROOT, SERVE_CONFIG, load_serve_config
from kuberay.validate import TARGETS
from serve_app.config import AppArgs
from serve_app.production import INGRESS_SECRETS, ROUTER_SECRETS, production_problems
from tests.unit.test_kuberay_manifests import _peers, _policies, built, one, rayservice

Doc = dict[str, Any]
DEPLOYMENT_MD = REPO_ROOT / "DEPLOYMENT.md"


def _serve(target: str = "production") -> Doc:
    config: Doc = yaml.safe_load(rayservice(target)["spec"]["serveConfigV2"])
    return config


def _deployments(target: str = "production") -> dict[str, Doc]:
    return {d["name"]: d for d in _serve(target)["applications"][0]["deployments"]}


def _groups(target: str) -> dict[str, Doc]:
    cluster = rayservice(target)["spec"]["rayClusterConfig"]
    return {g["groupName"]: g for g in cluster["workerGroupSpecs"]}


def _envs(target: str, secrets: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    docs = built(target)
    envs = {
        role: container_env(docs, c, secrets)
        for role, c in ray_containers(one(docs, "RayService")).items()
    }
    bot = one(docs, "Deployment", "happykube-bot")["spec"]["template"]["spec"]["containers"][0]
    envs["bot"] = container_env(docs, bot, secrets)
    return envs


# --- 1. production mode ------------------------------------------------------------------


def test_production_containers_run_in_production_mode_and_the_image_defaults_to_it() -> None:
    for role, env in _envs("production", generated_secrets()).items():
        assert env.get("HAPPYKUBE_ENVIRONMENT") == "production", role
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "HAPPYKUBE_ENVIRONMENT=production" in dockerfile


def test_production_refuses_the_secret_templates_as_they_are() -> None:
    """Creating the Secrets from the unedited templates must not give a running cluster."""
    api = _envs("production", secret_templates())["api"]
    problems = "\n".join(production_problems(api, secrets=INGRESS_SECRETS))
    for name in INGRESS_SECRETS:
        assert f"{name} still holds a placeholder" in problems


def test_production_starts_with_generated_secrets_and_pinned_revisions() -> None:
    envs = _envs("production", generated_secrets())
    assert production_problems(envs["api"], secrets=INGRESS_SECRETS) == []
    args = AppArgs.model_validate(_serve()["applications"][0]["args"])
    pinned = args.model_copy(
        update={
            "models": {
                name: spec.model_copy(update={"revision": "0123456789abcdef" * 2 + "01234567"})
                for name, spec in args.models.items()
            }
        }
    )
    assert production_problems(envs["head"], args=pinned) == []


def test_production_refuses_the_committed_moving_revisions() -> None:
    args = AppArgs.model_validate(_serve()["applications"][0]["args"])
    problems = production_problems({"HAPPYKUBE_ENVIRONMENT": "production"}, args=args)
    assert len(problems) == len(args.models)
    assert all("'main' is not a 40-hex commit sha" in p for p in problems)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"HAPPYKUBE_USER_PEPPER": None}, "HAPPYKUBE_USER_PEPPER is missing"),
        ({"DATABASE_URL": None}, "DATABASE_URL is missing"),
        ({"HAPPYKUBE_API_KEY_PEPPER": "short"}, "HAPPYKUBE_API_KEY_PEPPER must be a random"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "DATABASE_URL must name a PostgreSQL"),
        ({"HAPPYKUBE_BOOTSTRAP_API_KEY": "k" * 20}, "HAPPYKUBE_BOOTSTRAP_API_KEY is set"),
        ({"REDIS_URL": "redis://:CHANGE_ME@x:6379/0"}, "REDIS_URL still holds a placeholder"),
    ],
)
def test_production_names_each_unfit_variable(change: dict[str, str | None], expected: str) -> None:
    env = {**_envs("production", generated_secrets())["api"]}
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    (problem,) = production_problems(env, secrets=INGRESS_SECRETS)
    assert problem.startswith(expected)
    assert "x.db" not in problem and "k" * 20 not in problem  # names, never values


def test_local_mode_accepts_what_production_refuses() -> None:
    env = {"HAPPYKUBE_ENVIRONMENT": "local", "HAPPYKUBE_BOOTSTRAP_API_KEY": "k" * 20}
    assert production_problems(env, secrets=INGRESS_SECRETS) == []
    local = _envs("local", generated_secrets({"HAPPYKUBE_BOOTSTRAP_API_KEY": "k" * 20}))
    assert local["api"]["HAPPYKUBE_ENVIRONMENT"] == "local"


# --- 2. each pod holds only what its role needs ------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_bot_holds_only_its_own_secret_and_cannot_reach_postgres(target: str) -> None:
    docs = built(target)
    bot = one(docs, "Deployment", "happykube-bot")["spec"]["template"]["spec"]["containers"][0]
    assert secret_refs(bot) == {"happykube-bot"}
    env = _envs(target, generated_secrets())["bot"]
    for name in INGRESS_SECRETS:
        assert name not in env
    assert "happykube-bot" not in _peers(_policies(docs)["happykube-postgres"], 5432)


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_ray_pod_gets_only_what_its_role_needs(target: str) -> None:
    containers = ray_containers(rayservice(target))
    assert set(containers) == {"head", "api", "models"}
    assert secret_refs(containers["head"]) == set()
    assert secret_refs(containers["models"]) == set()
    assert secret_refs(containers["api"]) - {"happykube-bootstrap"} == {"happykube-app"}
    assert set(ROUTER_SECRETS) <= set(INGRESS_SECRETS)
    # Serve puts each deployment on the group that has its custom resource, and only there.
    groups = _groups(target)
    for name, dep in _deployments(target).items():
        wants = set(dep["ray_actor_options"].get("resources", {}))
        role = "api" if name in {"Ingress", "LanguageRouter"} else "models"
        assert wants == {f"happykube_{role.removesuffix('s')}"}, name
        assert wants <= set(groups[role].get("resources", {})), name
        others = [g for r, g in groups.items() if r != role]
        assert not any(wants & set(g.get("resources", {})) for g in others), name


def test_only_the_api_workers_reach_postgres_and_the_cache_and_only_the_head_the_gcs_store() -> (
    None
):
    policies = _policies(built("production"))

    def selectors(app: str, port: int) -> list[Doc]:
        return [
            peer["podSelector"]["matchLabels"]
            for policy in policies[app]
            for rule in policy["spec"]["ingress"]
            if port in {p["port"] for p in rule.get("ports", [])}
            for peer in rule["from"]
        ]

    api = {"app.kubernetes.io/name": "happykube-ray", "app.kubernetes.io/component": "api"}
    head = {"app.kubernetes.io/name": "happykube-ray", "app.kubernetes.io/component": "head"}
    assert selectors("happykube-postgres", 5432) == [api]
    assert selectors("happykube-cache", 6379) == [api]
    assert selectors("happykube-gcs-redis", 6379) == [head]


# --- 3. disruption budgets ---------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_disruption_budgets_allow_a_drain_of_ray_pods(target: str) -> None:
    """Pods owned by a RayCluster (no scale subresource): only an integer minAvailable is
    computed; maxUnavailable or a percentage leaves 0 allowed disruptions."""
    pdbs = [d for d in built(target) if d["kind"] == "PodDisruptionBudget"]
    covered = set()
    for pdb in pdbs:
        spec = pdb["spec"]
        assert "maxUnavailable" not in spec, pdb["metadata"]["name"]
        assert isinstance(spec["minAvailable"], int), pdb["metadata"]["name"]
        selected = [
            name
            for name, group in _groups(target).items()
            if spec["selector"]["matchLabels"].items()
            <= group["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, pdb["metadata"]["name"]
        group = _groups(target)[selected[0]]
        # At the smallest fleet, one pod may still go.
        assert spec["minAvailable"] <= group["minReplicas"] - 1, pdb["metadata"]["name"]
        covered.add(selected[0])
    assert covered == set(_groups(target))


# --- 4. TLS issuance ---------------------------------------------------------------------


def test_cert_manager_http01_solver_is_reachable_from_the_ingress_controller() -> None:
    docs = built("production")
    assert "cert-manager.io/cluster-issuer" in one(docs, "Ingress")["metadata"]["annotations"]
    solver = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"].get("matchLabels")
        == {"acme.cert-manager.io/http01-solver": "true"}
    ]
    assert solver, "default-deny also blocks the HTTP-01 solver pod"
    assert _peers(solver, 8089) == {"ns:ingress-nginx"}


# --- 5. worker counts --------------------------------------------------------------------


def kuberay_hash(cluster: Doc) -> str:
    """KubeRay 1.7's GenerateHashWithoutReplicasAndWorkersToDelete, on our manifests: the
    fields it mutes never make a new cluster, and nothing else applies them either."""
    spec = copy.deepcopy(cluster)
    for template in [spec["headGroupSpec"]["template"]]:
        template["spec"].pop("tolerations", None)
    for group in spec["workerGroupSpecs"]:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
        group.get("scaleStrategy", {}).pop("workersToDelete", None)
        group["template"]["spec"].pop("tolerations", None)
    spec.pop("upgradeStrategy", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("target", list(TARGETS))
def test_worker_counts_are_part_of_what_kuberay_hashes(target: str) -> None:
    cluster = rayservice(target)["spec"]["rayClusterConfig"]
    for group in cluster["workerGroupSpecs"]:
        annotations = group["template"]["metadata"].get("annotations", {})
        counts = f"min={group['minReplicas']} max={group['maxReplicas']}"
        assert annotations.get("happykube.io/worker-counts") == counts, group["groupName"]
    edited = copy.deepcopy(cluster)
    edited["workerGroupSpecs"][0]["minReplicas"] += 1
    assert kuberay_hash(edited) == kuberay_hash(cluster)  # KubeRay alone would ignore it
    group = edited["workerGroupSpecs"][0]
    group["template"]["metadata"]["annotations"]["happykube.io/worker-counts"] = (
        f"min={group['minReplicas']} max={group['maxReplicas']}"
    )
    assert kuberay_hash(edited) != kuberay_hash(cluster)


def test_deployment_guide_no_longer_says_worker_counts_apply_in_place() -> None:
    text = DEPLOYMENT_MD.read_text(encoding="utf-8")
    assert "applied to the running cluster, no new cluster" not in text
    assert "happykube.io/worker-counts" in text


# --- 6. two replicas per model, one per pod ----------------------------------------------


def test_every_model_keeps_two_replicas_on_two_pods_in_production() -> None:
    models = _groups("production")["models"]
    for name, dep in _deployments("production").items():
        if name in {"Ingress", "LanguageRouter"}:
            continue
        assert dep["autoscaling_config"]["min_replicas"] >= 2, name
        assert dep["max_replicas_per_node"] == 1, name
        assert models["minReplicas"] >= dep["autoscaling_config"]["min_replicas"], name


# --- 7. two Redis roles ------------------------------------------------------------------


def _redis_args(docs: list[Doc], service: str) -> tuple[dict[str, str], Doc]:
    svc = one(docs, "Service", service)
    (workload,) = [
        d
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet"}
        and d["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    ]
    container = workload["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    return dict(zip(args[::2], args[1::2], strict=True)), workload


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0, "mb": 1e6 / 2**20, "gb": 1e9 / 2**20}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity.removesuffix(unit)) * factor
    raise ValueError(quantity)


@pytest.mark.parametrize("target", list(TARGETS))
def test_gcs_store_and_cache_are_separate_redis_with_opposite_settings(target: str) -> None:
    docs = built(target)
    gcs_host = rayservice(target)["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"][
        "redisAddress"
    ].split(":")[0]
    cache_url = generated_secrets()["happykube-app"]["REDIS_URL"]
    cache_host = re.sub(r"^redis://[^@]*@", "", cache_url).split(":")[0]
    assert gcs_host != cache_host

    gcs, gcs_workload = _redis_args(docs, gcs_host)
    assert gcs["--maxmemory-policy"] == "noeviction"
    assert gcs["--appendonly"] == "yes"
    assert gcs_workload["spec"]["volumeClaimTemplates"]

    cache, cache_workload = _redis_args(docs, cache_host)
    assert cache["--maxmemory-policy"] == "allkeys-lru"
    assert cache["--appendonly"] == "no" and cache["--save"] == ""
    limit = cache_workload["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert _mebibytes(cache["--maxmemory"]) <= 0.8 * _mebibytes(limit["memory"])


# --- 9. metrics --------------------------------------------------------------------------

_NODE_TYPE = {"head": "head", "api": "worker", "models": "worker"}  # set by the operator


def test_pod_monitors_scrape_declared_ports_that_the_policies_admit() -> None:
    docs = built("production")
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    containers = ray_containers(one(docs, "RayService"))
    cluster = one(docs, "RayService")["spec"]["rayClusterConfig"]
    labels = {"head": cluster["headGroupSpec"]["template"]["metadata"]["labels"]}
    labels |= {g["groupName"]: g["template"]["metadata"]["labels"] for g in _groups_docs(docs)}
    scraped: dict[str, set[str]] = {role: set() for role in containers}
    for monitor in monitors:
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        for role, container in containers.items():
            pod_labels = {**labels[role], "ray.io/node-type": _NODE_TYPE[role]}
            if wanted <= pod_labels.items():
                ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
                for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                    assert endpoint["port"] in ports, (role, endpoint["port"])
                    scraped[role].add(endpoint["port"])
                    admitted = _peers(_policies(docs)["happykube-ray"], ports[endpoint["port"]])
                    assert "ns:monitoring" in admitted, endpoint["port"]
    assert scraped["head"] == {"metrics", "as-metrics", "dash-metrics"}
    assert scraped["api"] == scraped["models"] == {"metrics"}


def _groups_docs(docs: list[Doc]) -> list[Doc]:
    groups: list[Doc] = one(docs, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    return groups


def test_grafana_dashboard_ships_as_a_configmap_for_the_sidecar() -> None:
    dashboard = one(built("production"), "ConfigMap", "happykube-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["happykube-dashboard.json"])
    source = REPO_ROOT / "kuberay" / "grafana" / "happykube-dashboard.json"
    assert shipped == json.loads(source.read_text(encoding="utf-8"))


# --- 10. the bot -------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_bot_settings_load_from_the_cluster_config_and_its_state_dir_is_writable(
    target: str,
) -> None:
    from bot.settings import BotSettings

    assert "HAPPYKUBE_BOT_STATE_KEY" in secret_templates()["happykube-bot"]
    env = _envs(target, generated_secrets())["bot"]
    settings = BotSettings.model_validate({k.lower(): v for k, v in env.items()})
    assert settings.telegram_api_base_url.endswith("/bot")
    pod = one(built(target), "Deployment", "happykube-bot")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    state_dir = Path(env["HAPPYKUBE_BOT_DATA_DIR"])
    mounts = {Path(m["mountPath"]): m["name"] for m in container["volumeMounts"]}
    (volume,) = [name for path, name in mounts.items() if state_dir.is_relative_to(path)]
    source = next(v for v in pod["volumes"] if v["name"] == volume)
    # Reminders and chat settings must survive a pod restart: a claim, not memory.
    claim = source["persistentVolumeClaim"]["claimName"]
    assert one(built(target), "PersistentVolumeClaim", claim)
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_the_production_serve_config_file_is_what_the_overlay_deploys() -> None:
    assert _serve("production") == load_serve_config(SERVE_CONFIG)


def test_the_app_builder_refuses_unpinned_revisions_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`build_app` runs on the head when KubeRay applies serveConfigV2: the refusal is there,
    before any replica starts, in one line naming each model."""
    from serve_app.app import build_app
    from serve_app.production import ProductionConfigError

    args = AppArgs.model_validate(_serve()["applications"][0]["args"])
    monkeypatch.setenv("HAPPYKUBE_ENVIRONMENT", "production")
    with pytest.raises(ProductionConfigError) as refused:
        build_app(args)
    message = str(refused.value)
    assert "\n" not in message
    for name in args.models:
        assert f"model {name} revision 'main' is not a 40-hex commit sha" in message
    monkeypatch.setenv("HAPPYKUBE_ENVIRONMENT", "local")
    build_app(args)  # local mode only warns, at load time
