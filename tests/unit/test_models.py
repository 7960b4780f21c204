"""Loading checkpoints: generated tiny ones, label checks, hub ids, offline errors."""

from pathlib import Path

import numpy as np
import pytest

from serve_app.config import ModelSpec
from serve_app.errors import ModelLoadError
from serve_app.models import load_predictor

IT_EMOTION = ("anger", "fear", "joy", "sadness")


def test_tiny_checkpoint_loads_and_predicts(tiny_checkpoints: dict[str, Path]) -> None:
    spec = ModelSpec(source=str(tiny_checkpoints["it_emotion"]), labels=IT_EMOTION)
    predictor = load_predictor("it_emotion", spec)
    probs = predictor.predict(["Oggi sono felicissima!", "che tristezza"])
    assert probs.shape == (2, 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert predictor.labels == IT_EMOTION
    assert predictor.revision == "random-tiny-seed0"


def test_rows_follow_input_order_despite_length_sorting(tiny_checkpoints: dict[str, Path]) -> None:
    """The batch is sorted by length inside; answers still come back in input order."""
    spec = ModelSpec(source=str(tiny_checkpoints["en_emotion"]), labels=tuple("abcdefg"))
    predictor = load_predictor("en_emotion", spec)
    texts = ["a much longer message about a long and tiring day at work", "ok", "so so happy"]
    together = predictor.predict(texts)
    one_by_one = np.vstack([predictor.predict([t]) for t in texts])
    assert np.allclose(together, one_by_one, atol=1e-5)
    assert not np.allclose(together[0], together[1], atol=1e-6)


def test_truncation_bounds_long_texts(tiny_checkpoints: dict[str, Path]) -> None:
    spec = ModelSpec(source=str(tiny_checkpoints["it_sentiment"]), labels=("n", "p"), max_tokens=8)
    predictor = load_predictor("it_sentiment", spec)
    assert predictor.predict(["parola " * 5000]).shape == (1, 2)


def test_label_count_mismatch_fails_clearly(tiny_checkpoints: dict[str, Path]) -> None:
    spec = ModelSpec(source=str(tiny_checkpoints["it_emotion"]), labels=("negative", "positive"))
    with pytest.raises(ModelLoadError, match=r"checkpoint has 4 labels but the config lists 2"):
        load_predictor("it_emotion", spec)


def test_hub_id_needs_a_pinned_revision() -> None:
    with pytest.raises(ValueError, match="needs a pinned revision"):
        ModelSpec(source="MilaNLProc/feel-it-italian-emotion", labels=IT_EMOTION)


def test_offline_hub_model_error_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = ModelSpec(source="happykube-tests/no-such-model", revision="abc123", labels=("a", "b"))
    with pytest.raises(ModelLoadError, match=r"happykube-tests/no-such-model.*HF_HUB_OFFLINE"):
        load_predictor("it_sentiment", spec)


def test_missing_local_directory_is_clear(tmp_path: Path) -> None:
    spec = ModelSpec(source=str(tmp_path / "nothing-here"), labels=("a", "b"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_predictor("it_sentiment", spec)
