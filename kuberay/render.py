"""Render the RayService's `serveConfigV2` from `serve_config.production.yaml`.

The RayService carries the Serve config as one YAML string. Copying it by hand drifts: a knob
changed in the serve config silently never reaches the cluster. So the block in
`base/rayservice.yaml` is generated here, everything around it (comments included) is left
as written, and `--check` fails when the file on disk is not what rendering would produce.

The config is checked before it is written: Ray's own `ServeDeploySchema`, then an
unknown-key walk (Serve ignores keys it does not know, so a misspelt or retired knob such as
`target_num_ongoing_requests_per_replica` would otherwise deploy without effect), then our
`AppArgs` and each model's `user_config` (`BatchConfig`), and the deployment names the app
really binds.
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serve_app import registry

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = REPO_ROOT / "serve_config.production.yaml"
RAYSERVICE = Path(__file__).resolve().parent / "base" / "rayservice.yaml"

# The deployments `serve_app.app:build_app` binds; a config entry for any other name is a typo.
APP_DEPLOYMENTS = ("Ingress", "LanguageRouter", *registry.REQUIRED)
OPTIONAL_DEPLOYMENTS = registry.OPTIONAL

_BLOCK_KEY = re.compile(r"^(?P<indent>[ \t]*)serveConfigV2:[ \t]*\|[-+]?[ \t]*$")


class ServeConfigError(ValueError):
    """Raised when a serve config is not one Ray Serve would apply exactly as written."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Rendered:
    """The outcome of a render: the manifest's new text and whether it differs on disk."""

    path: Path
    text: str
    current: str

    @property
    def drifted(self) -> bool:
        return self.text != self.current

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.current.splitlines(keepends=True),
                self.text.splitlines(keepends=True),
                fromfile=f"{self.path} (on disk)",
                tofile=f"{self.path} (rendered)",
            )
        )


def load_serve_config(path: Path = SERVE_CONFIG) -> dict[str, Any]:
    """Read a serve config file into a plain mapping."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ServeConfigError([f"{path}: expected a mapping at the top level"])
    return data


def _models_in(annotation: Any) -> list[type[Any]]:
    """The pydantic model classes an annotation can hold (through Optional, Union, List)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[Any]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _unknown_in(value: Any, annotation: Any, path: str) -> list[str]:
    if isinstance(value, list):
        return [
            problem
            for i, item in enumerate(value)
            for problem in _unknown_in(item, annotation, f"{path}[{i}]")
        ]
    models = _models_in(annotation)
    if not isinstance(value, dict) or not models:
        return []
    fields = models[0].model_fields
    known = set(fields) | {f.alias for f in fields.values() if f.alias}
    problems = []
    for key, sub in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            problems.append(f"unknown key {where!r} (Serve would silently ignore it)")
        else:
            name = key if key in fields else next(n for n, f in fields.items() if f.alias == key)
            problems.extend(_unknown_in(sub, fields[name].annotation, where))
    return problems


def unknown_keys(config: dict[str, Any]) -> list[str]:
    """Every key in `config` that Ray's `ServeDeploySchema` (recursively) has no field for."""
    from ray.serve.schema import ServeDeploySchema

    return _unknown_in(config, ServeDeploySchema, "")


def check_serve_config(config: dict[str, Any]) -> None:
    """Raise `ServeConfigError` listing every reason Serve would not apply `config` as written."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from serve_app.classifier import BatchConfig
    from serve_app.config import AppArgs

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        raise ServeConfigError([f"ServeDeploySchema: {exc}"]) from exc
    problems = unknown_keys(config)
    allowed = set(APP_DEPLOYMENTS) | set(OPTIONAL_DEPLOYMENTS)
    for app in config.get("applications", []):
        name = app.get("name", "?")
        try:
            AppArgs.model_validate(app.get("args", {}))
        except ValidationError as exc:
            problems.append(f"application {name!r} args: {exc}")
        for dep in app.get("deployments", []):
            dep_name = dep.get("name")
            if dep_name not in allowed:
                problems.append(f"application {name!r}: no deployment named {dep_name!r}")
            if dep_name in registry.NAMES and dep.get("user_config") is not None:
                try:
                    BatchConfig.model_validate(dep["user_config"])
                except ValidationError as exc:
                    problems.append(f"deployment {dep_name!r} user_config: {exc}")
    if problems:
        raise ServeConfigError(problems)


def serve_config_v2(config: dict[str, Any]) -> str:
    """The `serveConfigV2` string: the checked config, dumped in its own key order."""
    check_serve_config(config)
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


def replace_block(manifest: str, body: str) -> str:
    """Replace the literal block under `serveConfigV2: |` in `manifest` with `body`."""
    lines = manifest.splitlines(keepends=True)
    for i, line in enumerate(lines):
        match = _BLOCK_KEY.match(line.rstrip("\n"))
        if not match:
            continue
        indent = len(match["indent"])
        end = i + 1
        while end < len(lines) and (
            not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
        ):
            end += 1
        # Blank lines before the next key belong to the layout, not to the block.
        while end > i + 1 and not lines[end - 1].strip():
            end -= 1
        pad = " " * (indent + 2)
        block = [f"{pad}{row}\n" if row else "\n" for row in body.rstrip("\n").split("\n")]
        return "".join([*lines[: i + 1], *block, *lines[end:]])
    raise ServeConfigError(["manifest has no `serveConfigV2: |` block to render into"])


def render(serve_config: Path = SERVE_CONFIG, manifest: Path = RAYSERVICE) -> Rendered:
    """Render `manifest` with the serveConfigV2 generated from `serve_config` (not written)."""
    current = manifest.read_text(encoding="utf-8")
    text = replace_block(current, serve_config_v2(load_serve_config(serve_config)))
    return Rendered(path=manifest, text=text, current=current)
