"""The labelled sets under `shared/data`, read into (texts, labels) with our label mappings.

Every text goes through `serve_app.text.normalize` here, the same function the serving path
applies, so a model never sees a text shaped differently from what it was trained on.

What each set may be used for is fixed by `shared/data/README.md` and enforced by the split
names this module offers: training reads `train`, recipe choices read `dev`, and only
`training.evaluate` reads the evaluation sets (`test` splits and MultiEmotions-It).

Label mappings, written down once:
- en_emotion: GoEmotions' Ekman view; rows with exactly one Ekman label. XED-EN rows with exactly
  one label among the seven (its anticipation and trust have no Ekman counterpart, so rows
  carrying them are dropped).
- it_emotion: XED-IT's Plutchik flags restricted to anger, fear, joy, sadness; a row is kept
  when exactly one of the four is set (its other flags, such as surprise or trust, are ignored).
  `xed_it_multi` offers the rows with two or more of the four as one row per label, for training
  at a lower weight (a line tagged anger and sadness is evidence for both).
  MultiEmotions-It (evaluation only) is read the same way.
- it_sentiment: SENTIPOLC16 overall polarity, positive and negative rows only (neutral and mixed
  have no place in a two-way classifier).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from serve_app.text import normalize

EN_EMOTION = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
IT_EMOTION = ("anger", "fear", "joy", "sadness")
IT_SENTIMENT = ("negative", "positive")
LABELS: dict[str, tuple[str, ...]] = {
    "en_emotion": EN_EMOTION,
    "it_emotion": IT_EMOTION,
    "it_sentiment": IT_SENTIMENT,
}
# SENTIPOLC16 has no dev split: this share of its train rows, picked by a hash of the text, is
# held out for recipe choices (and never trained on by the final models' dev-tuned steps).
SENTIPOLC_DEV_SHARE = 10


def data_dir() -> Path:
    """Where the shared data lives: $HAPPYKUBE_DATA, else `../shared/data` from the repo."""
    env = os.environ.get("HAPPYKUBE_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    for candidate in (repo.parent / "shared" / "data", repo / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("shared data not found: set HAPPYKUBE_DATA to its folder")


@dataclass(frozen=True)
class Labelled:
    """Normalised texts with one label index each, into `labels`."""

    texts: list[str]
    y: list[int]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def __add__(self, other: Labelled) -> Labelled:
        assert self.labels == other.labels
        return Labelled(self.texts + other.texts, self.y + other.y, self.labels)


def _rows(path: Path) -> Iterable[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _pick(pairs: Iterable[tuple[str, str]], labels: tuple[str, ...]) -> Labelled:
    index = {name: i for i, name in enumerate(labels)}
    texts: list[str] = []
    y: list[int] = []
    for text, label in pairs:
        norm = normalize(text)
        if label in index and norm:
            texts.append(norm)
            y.append(index[label])
    return Labelled(texts, y, labels)


def _only_one(flags: str, allowed: tuple[str, ...]) -> str:
    """The single label of `flags` that is in `allowed`, or '' when there are none or several."""
    hits = {flag for flag in flags.split(",") if flag in allowed}
    return hits.pop() if len(hits) == 1 else ""


def goemotions(split: str) -> Labelled:
    """GoEmotions Ekman rows with exactly one Ekman label (`label` is empty otherwise)."""
    path = data_dir() / "goemotions" / f"ekman_{split}.csv"
    return _pick(((r["text"], r["label"]) for r in _rows(path)), EN_EMOTION)


def xed_en(split: str) -> Labelled:
    """XED English rows whose Plutchik labels are exactly one of the Ekman seven."""
    path = data_dir() / "xed" / "xed_en.csv"
    pairs = (
        (r["text"], r["label"])
        for r in _rows(path)
        if r["split"] == split and set(r["labels"].split(",")) <= set(EN_EMOTION)
    )
    return _pick(pairs, EN_EMOTION)


def xed_it(split: str) -> Labelled:
    """XED Italian rows with exactly one of anger, fear, joy, sadness set."""
    path = data_dir() / "xed" / "xed_it.csv"
    pairs = (
        (r["text"], _only_one(r["labels"], IT_EMOTION)) for r in _rows(path) if r["split"] == split
    )
    return _pick(pairs, IT_EMOTION)


def xed_it_multi(split: str) -> Labelled:
    """XED Italian rows with two or more of the four emotions: one row per emotion, in order."""
    path = data_dir() / "xed" / "xed_it.csv"
    texts: list[str] = []
    y: list[int] = []
    for r in _rows(path):
        hits = [i for i, name in enumerate(IT_EMOTION) if name in r["labels"].split(",")]
        norm = normalize(r["text"])
        if r["split"] == split and len(hits) >= 2 and norm:
            texts += [norm] * len(hits)
            y += hits
    return Labelled(texts, y, IT_EMOTION)


def _sentipolc_dev(text: str) -> bool:
    digest = hashlib.sha256(normalize(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < SENTIPOLC_DEV_SHARE


def sentipolc(split: str) -> Labelled:
    """SENTIPOLC16 positive/negative tweets; `train`/`dev` are carved from the official train."""
    if split == "test":
        rows = _rows(data_dir() / "sentipolc16" / "sentipolc16_test.csv")
        return _pick(((r["text"], r["label"]) for r in rows), IT_SENTIMENT)
    want_dev = split == "dev"
    rows = _rows(data_dir() / "sentipolc16" / "sentipolc16_train.csv")
    pairs = ((r["text"], r["label"]) for r in rows if _sentipolc_dev(r["text"]) == want_dev)
    return _pick(pairs, IT_SENTIMENT)


def remap(data: Labelled, labels: tuple[str, ...], mapping: dict[str, str]) -> Labelled:
    """Relabel `data` into `labels` through `mapping`; rows whose label is not mapped go."""
    index = {name: i for i, name in enumerate(labels)}
    texts: list[str] = []
    y: list[int] = []
    for text, old in zip(data.texts, data.y, strict=True):
        new = mapping.get(data.labels[old])
        if new is not None:
            texts.append(text)
            y.append(index[new])
    return Labelled(texts, y, labels)


def multiemotions_it() -> Labelled:
    """MultiEmotions-It rows with exactly one of the four emotions; evaluation only (NC licence)."""
    path = data_dir() / "multiemotions-it" / "multiemotions_it.csv"
    pairs = ((r["text"], _only_one(r["emotions"], IT_EMOTION)) for r in _rows(path))
    return _pick(pairs, IT_EMOTION)
