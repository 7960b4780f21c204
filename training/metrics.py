"""Accuracy and macro-F1, the two figures every table in this project reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro_f1: float
    n: int

    def describe(self) -> str:
        return f"macro-F1 {self.macro_f1:.3f} acc {self.accuracy:.3f} (n={self.n})"

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "n": self.n,
        }


def score(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, k: int) -> Scores:
    """Accuracy and macro-F1 over all `k` labels (a label never predicted counts as F1 0)."""
    from sklearn.metrics import accuracy_score, f1_score

    return Scores(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(
            f1_score(y_true, y_pred, labels=list(range(k)), average="macro", zero_division=0)
        ),
        n=len(y_true),
    )
