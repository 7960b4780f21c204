"""The numpy sentence encoder computes what transformers' BertModel computes."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.sentence_encoder import (
    NumpyBert,
    SentenceEncoder,
    TorchBert,
    _erf,
    installed_spec,
    load_tokenizer,
    model_dir,
)

TEXTS = [
    "I love this!",
    "I'm scared of the dark",
    "",
    "ok",
    "😭😭😭",
    "what a surprise, I did not see that coming at all, wow " * 8,  # truncated at max_tokens
    "Ciao, come stai?",
]


def test_erf_matches_the_exact_function() -> None:
    from scipy.special import erf  # type: ignore[import-untyped]  # no stubs installed

    x = np.linspace(-8.0, 8.0, 200_001, dtype=np.float32)
    exact = erf(x.astype(np.float64))
    assert float(np.abs(_erf(x).astype(np.float64) - exact).max()) < 1e-6


@pytest.mark.parametrize("layers", [1, 2])
def test_numpy_layers_match_transformers(layers: int) -> None:
    """Same vectors, mixed lengths in one padded chunk, to float32 rounding."""
    spec = installed_spec(layers)
    path = model_dir()
    tokenizer = load_tokenizer(path, spec.max_tokens)
    ours = SentenceEncoder(spec, tokenizer, NumpyBert(path, layers))
    reference = SentenceEncoder(spec, tokenizer, TorchBert(path, layers, "fp32"))
    got, want = ours.encode(TEXTS), reference.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.abs(got - want).max()) < 1e-5


def test_tokenizer_matches_transformers() -> None:
    """The `tokenizers` file alone gives the ids transformers' fast tokenizer gives."""
    from transformers import AutoTokenizer

    spec = installed_spec(1)
    ours = load_tokenizer(model_dir(), spec.max_tokens)
    theirs = AutoTokenizer.from_pretrained(str(model_dir()))
    for text in TEXTS:
        want = theirs(text, truncation=True, max_length=spec.max_tokens)["input_ids"]
        assert ours.encode(text).ids == want
