"""Download the production models into the image at build time (`Dockerfile`, stage `models`).

Pods must start without reaching a model hub: a cold start that downloads three checkpoints
is slow, and a hub outage or a moved revision would stop scaling. So the image carries a
Hugging Face cache holding exactly the (source, revision) pairs the serve config names, and
runs with HF_HUB_OFFLINE=1. Only PyYAML and huggingface_hub are imported, so the build stage
installs nothing else.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

# serve_app.config's rule for "owner/name" hub ids (that module needs pydantic, which this
# build stage does not install; tests/unit/test_kuberay_manifests.py keeps the two equal).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Weights in safetensors, configs and tokenizer files; never the duplicate pickles/ONNX/TF.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "vocab*", "merges*"]


def hub_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The (hub id, revision) pairs a serve config loads; local paths are not downloaded."""
    pairs: set[tuple[str, str]] = set()
    for app in config.get("applications", []):
        for spec in app.get("args", {}).get("models", {}).values():
            source = str(spec["source"])
            if Path(source).exists() or not HUB_ID.match(source):
                continue
            pairs.add((source, str(spec.get("revision") or "main")))
    return sorted(pairs)


def main(argv: list[str]) -> int:
    """`python -m kuberay.bake SERVE_CONFIG`: fill $HF_HOME with the config's models."""
    from huggingface_hub import snapshot_download

    config = yaml.safe_load(Path(argv[0]).read_text(encoding="utf-8"))
    for source, revision in hub_models(config):
        if len(revision) != 40:
            print(f"warning: {source} revision {revision!r} is not a commit sha", file=sys.stderr)
        path = snapshot_download(repo_id=source, revision=revision, allow_patterns=ALLOW_PATTERNS)
        print(f"{source}@{revision} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
