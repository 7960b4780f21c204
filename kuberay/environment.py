"""The environment a container of the rendered manifests would start with.

Kubernetes builds it from `envFrom` (ConfigMaps, Secrets; later sources win) and then `env`
(literal values and `secretKeyRef`/`configMapKeyRef`). Tests use this to check who holds
which secret, and to boot the production overlay locally with the very variables a pod
would get. The Secrets are not in git: their keys come from `secrets/*.env.example`, their
values from the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SECRET_TEMPLATES = Path(__file__).resolve().parent / "secrets"
Document = dict[str, Any]


def secret_templates(folder: Path = SECRET_TEMPLATES) -> dict[str, dict[str, str]]:
    """Secret name -> {key: placeholder value}, from `<name>.env.example` (`happykube-<name>`)."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("*.env.example")):
        pairs = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                pairs[key] = value
        out["happykube-" + path.name.removesuffix(".env.example")] = pairs
    return out


def _config_maps(docs: list[Document]) -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: dict(d.get("data", {})) for d in docs if d["kind"] == "ConfigMap"
    }


def container_env(
    docs: list[Document], container: Document, secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The variables `container` starts with; a missing required source raises KeyError."""
    maps = _config_maps(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        store = maps if "configMapRef" in source else secrets
        if ref["name"] not in store:
            if ref.get("optional"):
                continue
            raise KeyError(f"{ref['name']} (envFrom of {container['name']})")
        env.update(store[ref["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        value_from = var.get("valueFrom", {})
        ref = value_from.get("secretKeyRef") or value_from.get("configMapKeyRef")
        if ref is None:
            continue  # fieldRef / resourceFieldRef: filled by the kubelet, none secret
        store = secrets if "secretKeyRef" in value_from else maps
        if ref["name"] in store and ref["key"] in store[ref["name"]]:
            env[var["name"]] = store[ref["name"]][ref["key"]]
        elif not ref.get("optional"):
            raise KeyError(f"{ref['name']}/{ref['key']} (env {var['name']})")
    return env


def ray_containers(doc: Document) -> dict[str, Document]:
    """Role (`head` or a worker group name) -> the Ray container of a RayService."""
    cluster = doc["spec"]["rayClusterConfig"]
    out = {"head": cluster["headGroupSpec"]["template"]["spec"]["containers"][0]}
    for group in cluster["workerGroupSpecs"]:
        out[group["groupName"]] = group["template"]["spec"]["containers"][0]
    return out


def secret_refs(container: Document) -> set[str]:
    """Every Secret a container reads, whole (envFrom) or one key at a time (env)."""
    names = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            names.add(ref["name"])
    return names


def generated_secrets(
    overrides: dict[str, str] | None = None, folder: Path = SECRET_TEMPLATES
) -> dict[str, dict[str, str]]:
    """The templates with every placeholder replaced by a fresh random value of its kind.

    Keys in `overrides` (e.g. a database URL that really exists) win. URLs keep their host
    and only get a random password, so the result says where each Secret points.
    """
    import base64
    import os
    import re
    import secrets

    overrides = overrides or {}
    out: dict[str, dict[str, str]] = {}
    for name, pairs in secret_templates(folder).items():
        filled = {}
        for key, value in pairs.items():
            if key in overrides:
                filled[key] = overrides[key]
            elif key == "HAPPYKUBE_ENCRYPTION_KEYS":
                filled[key] = "k1:" + base64.b64encode(os.urandom(32)).decode()
            elif key == "HAPPYKUBE_ACTIVE_KEY_ID":
                filled[key] = "k1"
            elif key == "HAPPYKUBE_BOT_STATE_KEY":
                filled[key] = base64.urlsafe_b64encode(os.urandom(32)).decode()
            else:
                filled[key] = re.sub(
                    r"CHANGE_ME\w*", lambda _: secrets.token_urlsafe(32).replace("-", "x"), value
                )
        out[name] = filled
    return out
