"""Download the production models into the image at build time (`Dockerfile`, stage `models`).

Pods must start without reaching a model hub: a cold start that downloads three checkpoints
is slow, and a hub outage or a moved revision would stop scaling. So the image carries a
Hugging Face cache holding exactly the (source, revision) pairs the serve config names, and
runs with HF_HUB_OFFLINE=1. Only PyYAML and huggingface_hub are imported, so the build stage
installs nothing else.

The bake refuses, with one line per model, what would fail only later in a pod: a revision
that is not a 40-hex commit sha (it can move; `--allow-unpinned` lets a throwaway CI build
through), and a snapshot without its config, tokenizer or safetensors weights. A checkpoint
published only as `pytorch_model.bin` (a pickle, never loaded here) is refused with the
command that converts it; pin a revision that has safetensors or bake a converted copy.
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


COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model")


def snapshot_problems(source: str, path: Path) -> list[str]:
    """Why the downloaded snapshot at `path` could not be served; empty when it can."""
    files = {p.name for p in path.iterdir()} if path.is_dir() else set()
    problems = []
    if "config.json" not in files:
        problems.append(f"{source}: no config.json")
    if not any(name in files for name in TOKENIZER_FILES):
        problems.append(f"{source}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    if not any(name.endswith(".safetensors") for name in files):
        problems.append(
            f"{source}: no *.safetensors weights at this revision (pytorch_model.bin is "
            "never baked: convert it to safetensors, e.g. with the hub's safetensors/convert "
            "space, and pin that revision, or bake a converted local copy)"
        )
    return problems


def bake(config: dict[str, Any], *, allow_unpinned: bool = False) -> list[str]:
    """Download every hub model of `config`; return every problem (empty: all baked)."""
    from huggingface_hub import snapshot_download

    problems = []
    for source, revision in hub_models(config):
        if not COMMIT_SHA.match(revision):
            message = f"{source}: revision {revision!r} is not a 40-hex commit sha"
            if not allow_unpinned:
                problems.append(message)
                continue
            print(f"warning: {message} (--allow-unpinned)", file=sys.stderr)
        path = Path(
            snapshot_download(repo_id=source, revision=revision, allow_patterns=ALLOW_PATTERNS)
        )
        found = snapshot_problems(source, path)
        problems += found
        if not found:
            print(f"{source}@{revision} -> {path}")
    return problems


def main(argv: list[str]) -> int:
    """`python -m kuberay.bake SERVE_CONFIG [--allow-unpinned]`: fill $HF_HOME, or refuse."""
    allow_unpinned = "--allow-unpinned" in argv
    paths = [a for a in argv if a != "--allow-unpinned"]
    config = yaml.safe_load(Path(paths[0]).read_text(encoding="utf-8"))
    problems = bake(config, allow_unpinned=allow_unpinned)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
