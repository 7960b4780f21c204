"""`happykube eval`: one table of accuracy and macro-F1 for built-in and configured models.

The evaluation sets are fixed by the issue and never used for training or recipe choices:
- en_emotion: GoEmotions Ekman test, rows with exactly one Ekman label;
- it_emotion: MultiEmotions-It, rows with exactly one of anger, fear, joy, sadness;
- it_sentiment: SENTIPOLC16 test, positive and negative tweets.
Any model a serve config names (the production hub models, say) is scored on the same rows
through the same `load_predictor`, so the table compares like with like. A hub model that is not
in the local cache gets a row saying so instead of stopping the run.

Throughput (`--speed`) is texts per second through `Predictor.predict` in this process, in
batches of 64 short messages, after one warm-up batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_app import registry
from serve_app.config import ModelSpec
from serve_app.models import Predictor, load_predictor
from training import data
from training.data import Labelled
from training.metrics import Scores, score

EVAL_SETS: dict[str, tuple[str, Callable[[], Labelled]]] = {
    "en_emotion": ("GoEmotions Ekman test (single label)", lambda: data.goemotions("test")),
    "it_emotion": ("MultiEmotions-It (exactly one of 4)", data.multiemotions_it),
    "it_sentiment": ("SENTIPOLC16 test (pos/neg)", lambda: data.sentipolc("test")),
}
SPEED_BATCH = 64


def builtin_spec(name: str, models_dir: Path = Path("models")) -> ModelSpec:
    """The spec that serves built-in model `name` from `models_dir/name`."""
    return ModelSpec(source=str(models_dir / name), kind="linear", labels=registry.LABELS[name])


@dataclass(frozen=True)
class Row:
    model: str
    source: str
    dataset: str
    scores: Scores | None = None
    texts_per_s: float | None = None
    note: str = ""


def evaluate(predictor: Predictor, rows: Labelled) -> Scores:
    """Score `predictor` on `rows` (texts are already normalised)."""
    probs = predictor.predict(rows.texts)
    return score(rows.y, probs.argmax(axis=1), len(rows.labels))


def throughput(predictor: Predictor, texts: list[str], batch: int = SPEED_BATCH) -> float:
    """Texts per second through `predict`, in batches of `batch`, after a warm-up batch."""
    predictor.predict(texts[:batch])
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        predictor.predict(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


def _precision_matters(spec: ModelSpec) -> bool:
    """True for a transformers model, or a linear artifact that carries a sentence encoder."""
    import json

    if spec.kind != "linear":
        return True
    config = Path(spec.source) / "config.json"
    if not config.is_file():
        return False
    return "encoder" in json.loads(config.read_text(encoding="utf-8")).get("features", {})


def configured_specs(config: Path) -> dict[str, ModelSpec]:
    """The `models` of the first application in a serve config file."""
    import yaml

    raw: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
    models = raw["applications"][0]["args"]["models"]
    return {name: ModelSpec.model_validate(spec) for name, spec in models.items()}


def run(
    models_dir: Path,
    config: Path | None = None,
    speed: bool = False,
    speed_texts: int = 4000,
    int8: bool = False,
) -> list[Row]:
    """Score the built-in models (and those `config` names) on every evaluation set.

    With `int8`, each model is scored again at `precision: int8` where that changes anything
    (a transformers checkpoint, or a linear model with a sentence encoder), source "... int8".
    """
    # A configured hub model must come from the local cache: this command never downloads.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    candidates: list[tuple[str, str, ModelSpec]] = [
        (name, "built-in", builtin_spec(name, models_dir)) for name in EVAL_SETS
    ]
    if config is not None:
        candidates += [
            (name, spec.source, spec)
            for name, spec in configured_specs(config).items()
            if name in EVAL_SETS
        ]
    if int8:
        candidates += [
            (name, f"{source} int8", spec.model_copy(update={"precision": "int8"}))
            for name, source, spec in list(candidates)
            if _precision_matters(spec)
        ]
    sets = {name: loader() for name, (_, loader) in EVAL_SETS.items()}
    rows: list[Row] = []
    for name, source, spec in candidates:
        title = EVAL_SETS[name][0]
        try:
            predictor = load_predictor(name, spec)
        except Exception as exc:
            rows.append(Row(name, source, title, note=f"not available: {exc}"))
            continue
        scores = evaluate(predictor, sets[name])
        rate = None
        if speed:
            pool = sets[name].texts
            texts = (pool * (speed_texts // max(len(pool), 1) + 1))[:speed_texts]
            rate = throughput(predictor, texts)
        rows.append(Row(name, source, title, scores, rate))
    return rows


def print_table(rows: list[Row]) -> None:
    """Print the rows as one rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="happykube eval")
    notes: list[str] = []
    for column in ("model", "source", "eval set", "n", "accuracy", "macro-F1", "texts/s", "note"):
        table.add_column(column)
    for row in rows:
        s = row.scores
        table.add_row(
            row.model,
            row.source,
            row.dataset,
            "" if s is None else str(s.n),
            "" if s is None else f"{s.accuracy:.3f}",
            "" if s is None else f"{s.macro_f1:.3f}",
            "" if row.texts_per_s is None else f"{row.texts_per_s:,.0f}",
            f"not available [{len(notes) + 1}]" if row.note else "",
        )
        if row.note:
            notes.append(row.note)
    console = Console(width=160)
    console.print(table)
    for i, note in enumerate(notes, start=1):
        console.print(f"[{i}] {note}", markup=False)
