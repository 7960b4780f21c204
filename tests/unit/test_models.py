"""Loading checkpoints: generated tiny ones, label checks, hub ids, offline errors."""

from pathlib import Path

import numpy as np
import pytest

from serve_app.config import ModelSpec
from serve_app.errors import ModelLoadError
from serve_app.models import load_predictor
from serve_app.registry import LABELS

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


def _linear_types(model: object) -> set[str]:
    """Qualified class names of the model's linear layers (stock, oneDNN or quantised)."""
    import torch

    assert isinstance(model, torch.nn.Module)
    return {
        f"{type(m).__module__}.{type(m).__name__}"
        for m in model.modules()
        if type(m).__name__ in {"Linear", "MkldnnLinear"}
    }


def test_fp32_runs_on_onednn_with_the_stock_results(
    tiny_checkpoints: dict[str, Path],
) -> None:
    spec = ModelSpec(source=str(tiny_checkpoints["en_emotion"]), labels=LABELS["en_emotion"])
    texts = ["I am so happy today", "this is terrible", "ok", "what a surprise!"]
    stock = load_predictor("en_emotion", spec.model_copy(update={"onednn": False}))
    onednn = load_predictor("en_emotion", spec)
    assert _linear_types(stock.model) == {"torch.nn.modules.linear.Linear"}  # type: ignore[attr-defined]
    assert _linear_types(onednn.model) == {"torch.utils.mkldnn.MkldnnLinear"}  # type: ignore[attr-defined]
    np.testing.assert_allclose(onednn.predict(texts), stock.predict(texts), atol=1e-5)


def test_int8_quantises_every_linear_layer_and_stays_close(
    tiny_checkpoints: dict[str, Path],
) -> None:
    source = str(tiny_checkpoints["en_emotion"])
    fp32 = load_predictor("en_emotion", ModelSpec(source=source, labels=LABELS["en_emotion"]))
    int8 = load_predictor(
        "en_emotion", ModelSpec(source=source, labels=LABELS["en_emotion"], precision="int8")
    )
    assert _linear_types(int8.model) == {"torch.ao.nn.quantized.dynamic.modules.linear.Linear"}  # type: ignore[attr-defined]
    texts = ["I am so happy today", "this is terrible", "ok", "what a surprise!"]
    got, want = int8.predict(texts), fp32.predict(texts)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.abs(got - want).max()) < 0.05


def test_builtin_replicas_never_import_torch() -> None:
    """The three built-in models load, predict and take a thread count without torch or
    transformers (English's sentence encoder runs in numpy); the count caps numpy's BLAS."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    code = """
import sys
from serve_app.config import ModelSpec
from serve_app.cpu import set_threads
from serve_app.models import load_predictor
from serve_app.registry import LABELS
from threadpoolctl import threadpool_info
for name in ("it_emotion", "it_sentiment", "en_emotion"):
    spec = ModelSpec(source=f"models/{name}", kind="linear", labels=LABELS[name])
    rows = load_predictor(name, spec).predict(["che bella giornata", "what a lovely day"])
    assert rows.shape == (2, len(LABELS[name]))
set_threads(1)
print("torch" in sys.modules, "transformers" in sys.modules)
print({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
import torch
set_threads(1)
print(torch.get_num_threads())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False", "{1}", "1"]


def test_length_chunks_cover_every_text_once_within_the_padding_bound() -> None:
    from serve_app.models import length_chunks

    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(3, 60, size=200)]
    chunks = length_chunks(lengths, max_size=16, max_padding=0.25)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(200))
    for chunk in chunks:
        assert 1 <= len(chunk) <= 16
        real = sum(lengths[i] for i in chunk)
        assert real >= 0.75 * len(chunk) * max(lengths[i] for i in chunk)
    # Equal lengths are never split for padding, only by size.
    assert [len(c) for c in length_chunks([7] * 40, 16, 0.25)] == [16, 16, 8]
    assert length_chunks([], 16, 0.25) == []


def test_chunked_batches_answer_like_single_texts(tiny_checkpoints: dict[str, Path]) -> None:
    """Many texts of mixed lengths, cut into several padded chunks, score as one by one."""
    spec = ModelSpec(source=str(tiny_checkpoints["en_emotion"]), labels=tuple("abcdefg"))
    predictor = load_predictor("en_emotion", spec)
    predictor.chunk_size = 4  # type: ignore[attr-defined]
    texts = [("word " * n).strip() + f" {n}" for n in (1, 30, 2, 17, 5, 5, 44, 3, 9, 12, 1)]
    together = predictor.predict(texts)
    one_by_one = np.vstack([predictor.predict([t]) for t in texts])
    assert np.allclose(together, one_by_one, atol=1e-5)
