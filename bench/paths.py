"""The serving paths `happykube bench` measures, their checkpoints and their messages.

Each path has the production architectures with random weights (cost is realistic, quality
is not); the checkpoints are generated once under var/bench/ and shared by the paths that
differ only in precision.
"""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from serve_app.registry import LABELS

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "var" / "bench"
# A throwaway key for this process's own local instances only.
BENCH_KEY = "hk_bench_" + secrets.token_urlsafe(32)
DATA = REPO.parent / "shared" / "data"
EN_LABELS = LABELS["en_emotion"]
IT_EMOTION = LABELS["it_emotion"]
IT_SENTIMENT = LABELS["it_sentiment"]
RAW_BATCH = 32
_FALLBACK = {
    "en": [
        "I can't believe they cancelled the concert again, so annoying",
        "Thanks so much, this made my whole day better",
        "I'm really worried about the exam tomorrow morning",
        "That movie was fine I guess, nothing special",
    ],
    "it": [
        "Oggi sono felicissima, che bella giornata!",
        "Non ne posso più di questo traffico, che rabbia",
        "Ho paura di non farcela all'esame di domani",
        "Mi manca tanto, sono triste da giorni",
    ],
}


@dataclass(frozen=True)
class PathSpec:
    """One serving path: its language, the models a message goes through, their precision."""

    name: str
    language: str
    models: dict[str, tuple[str, tuple[str, ...]]]  # model name -> (architecture size, labels)
    precision: str = "fp32"
    # Torch threads of each model replica under Serve. Raw uses both cores for each model in
    # turn; under Serve one thread per model measured faster than two (the proxy, ingress and
    # router need the other core's time, and idle OpenMP threads spin).
    threads: int = 1
    cpus: float = 0.8
    # Model calls per forward pass (each call carries up to `gather_texts` messages): small,
    # so the model computes one batch while the ingress answers the last one.
    max_batch: int = 8
    # 1 ms, not 5: a lone request no longer waits for company that is not coming, and under
    # load the batch fills while the last one computes (BENCHMARKS.md, A/B of 2026-12-03).
    batch_wait_s: float = 0.001
    gather_texts: int = 16
    gather_wait_s: float = 0.005
    replicas: int = 1


_EN = {"en_emotion": ("distilroberta", EN_LABELS)}
_IT = {"it_emotion": ("umberto", IT_EMOTION), "it_sentiment": ("umberto", IT_SENTIMENT)}
PATHS: dict[str, PathSpec] = {
    # One English model replica per core (one thread each): 1.5x the throughput of one
    # replica in fp32 here; the two Italian models already fill both cores.
    "en_fp32": PathSpec("en_fp32", "en", _EN, replicas=2),
    "en_int8": PathSpec("en_int8", "en", _EN, precision="int8", replicas=2),
    "it_fp32": PathSpec("it_fp32", "it", _IT),
    "it_int8": PathSpec("it_int8", "it", _IT, precision="int8"),
}


def messages(language: str, n: int = 512) -> list[str]:
    """Short real messages (GoEmotions dev, XED Italian) or, without the data, a fixed set."""
    source = {
        "en": DATA / "goemotions" / "ekman_dev.csv",
        "it": DATA / "xed" / "xed_it.csv",
    }[language]
    if source.is_file():
        with source.open(encoding="utf-8") as fh:
            texts = [row["text"] for row in csv.DictReader(fh) if 20 <= len(row["text"]) <= 140]
        return texts[:n]
    pool = _FALLBACK[language]
    return (pool * (n // len(pool) + 1))[:n]


def checkpoint(size: str, labels: tuple[str, ...], name: str) -> Path:
    """A random-weight checkpoint of a production architecture, generated once and kept."""
    from testing.checkpoints import write_checkpoint

    path = OUT / f"{name}-{size}"
    if not (path / "config.json").is_file():
        typer.echo(f"generating {path.relative_to(REPO)} (random weights, {size} size)")
        language = "it" if name.startswith("it_") else "en"
        write_checkpoint(path, labels, size=size, corpus=messages(language, 5000))
    return path


def model_specs(path: PathSpec) -> dict[str, Any]:
    """The path's models as `ModelSpec`s, keyed by model name."""
    from serve_app.config import ModelSpec

    return {
        name: ModelSpec(
            source=str(checkpoint(size, labels, name)), labels=labels, precision=path.precision
        )
        for name, (size, labels) in path.models.items()
    }


def load_path(path: PathSpec) -> list[Any]:
    """The path's predictors in this process, as the model deployments load them."""
    from serve_app.models import load_predictor

    return [load_predictor(name, spec) for name, spec in model_specs(path).items()]
