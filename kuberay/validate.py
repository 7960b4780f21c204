"""Offline validation of the manifests: no cluster, no network.

Three layers, because each catches what the others cannot:
- core objects (Deployment, Service, Ingress, NetworkPolicy, ...) against the Kubernetes
  OpenAPI schemas of every version we support, strictly (`kubernetes-validate --strict`);
- KubeRay objects against the CRD schemas vendored in `../shared/kuberay/crds`, made strict
  the way the API server behaves (see that folder's README): unknown fields refused, nulls
  dropped, required fields that have a default treated as optional; plus the operator's own
  checks that no schema expresses (name length, replica bounds, upgrade strategy);
- the `serveConfigV2` string against Ray's `ServeDeploySchema` and an unknown-key walk
  (`kuberay.render.check_serve_config`).
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from kuberay.render import REPO_ROOT, ServeConfigError, check_serve_config

KUBERAY = Path(__file__).resolve().parent
CRDS = REPO_ROOT.parent / "shared" / "kuberay" / "crds"
# Kubernetes minors we support: those KubeRay 1.7 is tested on that are still maintained.
KUBERNETES_VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")
TARGETS = {
    "base": KUBERAY / "base",
    "local": KUBERAY / "overlays" / "local",
    "production": KUBERAY / "overlays" / "production",
    "production-gpu": KUBERAY / "overlays" / "production-gpu",
}
_CRD_FILES = {
    "RayService": "ray.io_rayservices.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
}
# API groups with no Kubernetes OpenAPI schema: KubeRay's (CRDs vendored) and the
# Prometheus operator's (PodMonitor; a structural check only).
CUSTOM_GROUPS = ("ray.io", "monitoring.coreos.com")
_UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
Document = dict[str, Any]


def kustomize(target: Path) -> list[Document]:
    """Build a kustomization with `kubectl kustomize` and return its documents."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl builds the kustomizations: apt-get install kubectl")
    out = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [kubectl, "kustomize", str(target)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _strict(node: Any) -> Any:
    """Emulate the API server's strict field validation in plain JSON Schema."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _strict(value) for key, value in node.items()}
    props = node.get("properties")
    if isinstance(props, dict):
        if "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            node["additionalProperties"] = False
        # The API server fills defaults before validating, so such fields may be omitted.
        required = [k for k in node.get("required", []) if "default" not in props.get(k, {})]
        if required:
            node["required"] = required
        else:
            node.pop("required", None)
    return node


@functools.cache
def crd_schema(kind: str) -> Document:
    """The strict v1 JSON Schema of a KubeRay kind, from the vendored CRD."""
    text = (CRDS / _CRD_FILES[kind]).read_text(encoding="utf-8")
    # The CRDs are about 1 MB each: the C loader, where built, reads them ten times faster.
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: Document = _strict(v1["schema"]["openAPIV3Schema"])
    return schema


def drop_nulls(node: Any) -> Any:
    """Remove null values, as the API server prunes them before validation."""
    if isinstance(node, dict):
        return {k: drop_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [drop_nulls(item) for item in node if item is not None]
    return node


def _where(doc: Document) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name', '?')}"


def _cluster_spec(doc: Document) -> Document | None:
    spec = doc.get("spec", {})
    if doc["kind"] == "RayCluster":
        return spec if isinstance(spec, dict) else None
    cluster = spec.get("rayClusterConfig")
    return cluster if isinstance(cluster, dict) else None


def operator_checks(doc: Document) -> list[str]:
    """The KubeRay operator's own admission rules that the CRD schema cannot state."""
    where = _where(doc)
    problems = []
    name = doc.get("metadata", {}).get("name", "")
    if len(name) > 47 or not _DNS_1035.match(name):
        problems.append(f"{where}: name must be DNS-1035 and at most 47 characters")
    strategy = doc.get("spec", {}).get("upgradeStrategy", {}).get("type")
    if strategy is not None and strategy not in _UPGRADE_TYPES:
        problems.append(f"{where}: upgradeStrategy.type {strategy!r} not in {_UPGRADE_TYPES}")
    cluster = _cluster_spec(doc)
    if cluster is None:
        return problems
    for group in cluster.get("workerGroupSpecs", []):
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        replicas = group.get("replicas", low)
        if not low <= replicas <= high:
            problems.append(
                f"{where}: group {group.get('groupName')!r} needs "
                f"minReplicas <= replicas <= maxReplicas, got {low}, {replicas}, {high}"
            )
    templates = [cluster.get("headGroupSpec", {}).get("template", {})]
    templates += [g.get("template", {}) for g in cluster.get("workerGroupSpecs", [])]
    for template in templates:
        containers = template.get("spec", {}).get("containers", [])
        names = [c.get("name") for c in containers]
        if len(names) != len(set(names)):
            problems.append(f"{where}: duplicate container names {names}")
        env = {e.get("name") for c in containers for e in c.get("env", [])}
        if cluster.get("gcsFaultToleranceOptions") and "RAY_REDIS_ADDRESS" in env:
            problems.append(f"{where}: set Redis in gcsFaultToleranceOptions or env, not both")
    return problems


def validate_custom_resource(doc: Document) -> list[str]:
    """Problems with a KubeRay object: CRD schema, operator rules, embedded serve config."""
    import jsonschema

    where = _where(doc)
    clean = drop_nulls(copy.deepcopy(doc))
    validator = jsonschema.Draft202012Validator(crd_schema(doc["kind"]))
    problems = [
        f"{where}: {'.'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"
        for err in validator.iter_errors(clean)
    ]
    problems += operator_checks(clean)
    serve = clean.get("spec", {}).get("serveConfigV2")
    if isinstance(serve, str):
        try:
            check_serve_config(yaml.safe_load(serve))
        except ServeConfigError as exc:
            problems += [f"{where}: serveConfigV2: {p}" for p in exc.problems]
    service = clean.get("spec", {}).get("serveService")
    if isinstance(service, dict):
        embedded = {"apiVersion": "v1", "kind": "Service", **service}
        problems += [f"{where}: serveService: {p}" for p in validate_core(embedded)]
    return problems


def validate_core(doc: Document, versions: Iterable[str] = KUBERNETES_VERSIONS) -> list[str]:
    """Problems with a core Kubernetes object under each version, strict as the CLI's --strict."""
    import kubernetes_validate

    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.absolute_path)) or "<root>"
            problems.append(f"{_where(doc)} (k8s {version}): {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{_where(doc)} (k8s {version}): {exc.message}")
    return problems


def validate_pod_monitor(doc: Document) -> list[str]:
    """The fields of a PodMonitor the Prometheus operator needs (no CRD vendored here)."""
    where = _where(doc)
    if doc.get("apiVersion") != "monitoring.coreos.com/v1" or doc.get("kind") != "PodMonitor":
        return [f"{where}: only monitoring.coreos.com/v1 PodMonitor is expected"]
    spec = doc.get("spec", {})
    problems = []
    if not spec.get("selector", {}).get("matchLabels"):
        problems.append(f"{where}: spec.selector.matchLabels is required")
    endpoints = spec.get("podMetricsEndpoints") or []
    if not endpoints or not all(isinstance(e.get("port"), str) for e in endpoints):
        problems.append(f"{where}: every podMetricsEndpoints item needs a named port")
    return problems


def validate_documents(docs: Iterable[Document]) -> list[str]:
    """Every problem in a set of manifests, KubeRay and core alike."""
    problems: list[str] = []
    for doc in docs:
        group = str(doc.get("apiVersion", "")).split("/")[0]
        if group == "ray.io":
            problems += validate_custom_resource(doc)
        elif group == "monitoring.coreos.com":
            problems += validate_pod_monitor(doc)
        else:
            problems += validate_core(doc)
    return problems


def validate_targets(names: Iterable[str] = TARGETS) -> dict[str, list[str]]:
    """Build and validate each kustomize target; map target name to its problems."""
    return {name: validate_documents(kustomize(TARGETS[name])) for name in names}
