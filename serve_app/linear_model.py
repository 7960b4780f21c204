"""The built-in offline models: hashed word and character n-grams into a linear classifier.

Why not a transformer: on two CPU cores a DistilRoBERTa does about 125 short texts a second,
and the built-in models must do 500. Hashed n-grams need no vocabulary file, no hub and no
tokenizer download; they cost microseconds per text.

An artifact is a folder with two files, both plain data (no pickle, so loading runs no code):
- `config.json`: `format`, `labels`, the n-gram settings and `revision` (a hash of the weights);
- `weights.npz`: `word_idf`, `char_idf` (one idf per hashed feature), `coef` (labels x features)
  and `intercept`. Training (`training/train.py`) writes it with the same `Featurizer` this
  module serves with, so train and serve compute identical features.

A model may also carry an optional frozen sentence encoder (`features.encoder` in `config.json`,
see `serve_app.sentence_encoder`): its vector is a third block of features after the two n-gram
blocks, and its weights come from an installed package, never from the artifact folder.

Scores are one-vs-rest logistic outputs normalised to sum to one: that is what the trainer
(`SGDClassifier(loss="log_loss")`) optimises, and a two-label model stores its single weight
vector as the pair (-w, w), which makes the normalisation a plain sigmoid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from serve_app.config import ModelSpec
from serve_app.cpu import Precision
from serve_app.errors import ModelLoadError
from serve_app.sentence_encoder import (
    EncoderMismatchError,
    EncoderSpec,
    SentenceEncoder,
    load_encoder,
)

FORMAT = "happykube-linear/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
# Words, single punctuation marks and emoji are the word-level tokens: "!!!" and "😭" say a lot.
TOKEN_PATTERN = r"(?u)\b\w+\b|[^\w\s]"  # noqa: S105 - a regex, not a password

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FeatureSpec:
    """How a text becomes a sparse vector; saved in `config.json`, so it travels with weights."""

    n_features: int = 2**18
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    encoder: EncoderSpec | None = None
    # Word-block options, off by default (and then absent from config.json, so artifacts written
    # before they existed read back unchanged). `lemmas`, a language code: each word token is
    # replaced by its simplemma lemma before the n-grams, so "governi" and "governo" are one
    # feature and a word seen in one form helps its other forms. `polarity_tokens`: each emoji
    # or emoticon of clear polarity also counts as a token `__pos__` or `__neg__`, so a rare one
    # borrows the weight of the common ones.
    lemmas: str | None = None
    polarity_tokens: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_features": self.n_features,
            "word_ngrams": list(self.word_ngrams),
            "char_ngrams": list(self.char_ngrams),
        }
        if self.encoder is not None:
            out["encoder"] = self.encoder.to_json()
        if self.lemmas is not None:
            out["lemmas"] = self.lemmas
        if self.polarity_tokens:
            out["polarity_tokens"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            n_features=int(data["n_features"]),
            word_ngrams=(int(data["word_ngrams"][0]), int(data["word_ngrams"][1])),
            char_ngrams=(int(data["char_ngrams"][0]), int(data["char_ngrams"][1])),
            encoder=EncoderSpec.from_json(data["encoder"]) if "encoder" in data else None,
            lemmas=str(data["lemmas"]) if data.get("lemmas") is not None else None,
            polarity_tokens=bool(data.get("polarity_tokens", False)),
        )


# Emoji and emoticons of clear polarity, for `FeatureSpec.polarity_tokens`. Emoticons are
# matched in the lowercased text; ":/" not followed by "/" so a stray "http://" is no frown.
_POSITIVE_EMOJI = frozenset(
    "☺♥✌❤🌹🎉🎊👍👏💓💕💖💗💘💞💪😀😁😂😃😄😅😆😇😉😊😋😍😎😗😘😙😚😻🙂🙌🤗🤣🤩🥰"
)
_NEGATIVE_EMOJI = frozenset("☹👎💔💩😒😓😔😕😖😞😟😠😡😢😣😤😥😨😩😪😫😭😰😱🙁🙄🤢🤬🤮")
_EMOTICON = re.compile(r":-?\)|:-?d\b|;-?\)|<3|\bxd\b|:p\b|=\)|:'?-?\(|t[._]t|:-?/(?!/)")
_POSITIVE_EMOTICONS = frozenset({":)", ":-)", ":d", ":-d", ";)", ";-)", "<3", "xd", ":p", "=)"})
_TOKEN = re.compile(TOKEN_PATTERN)


class WordAnalyzer:
    """Word n-grams exactly as scikit-learn's `analyzer="word"` builds them (lowercase, then
    `TOKEN_PATTERN`, n-grams joined by a space), plus a spec's lemmas and polarity tokens."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.ngrams = spec.word_ngrams
        self.polarity_tokens = spec.polarity_tokens
        self.lemmas = spec.lemmas
        if spec.lemmas is not None:
            import simplemma

            self._lemmatize = simplemma.lemmatize

    def __call__(self, text: str) -> list[str]:
        text = text.lower()
        tokens = _TOKEN.findall(text)
        if self.lemmas is not None:
            tokens = [self._lemmatize(token, lang=self.lemmas) for token in tokens]
        low, high = self.ngrams
        out: list[str] = []
        for n in range(low, high + 1):
            out += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        if self.polarity_tokens:
            for ch in text:
                if ch in _POSITIVE_EMOJI:
                    out.append("__pos__")
                elif ch in _NEGATIVE_EMOJI:
                    out.append("__neg__")
            for face in _EMOTICON.findall(text):
                out.append("__pos__" if face in _POSITIVE_EMOTICONS else "__neg__")
        return out


@dataclass
class Featurizer:
    """Hashed word and char_wb n-gram counts -> sublinear tf x idf -> l2 norm, per block.

    The two blocks are normalised separately so that the many character n-grams of a text do
    not drown its few word n-grams. With an encoder, its (already unit-length, scaled) vector
    follows as a dense third block.
    """

    spec: FeatureSpec
    word_idf: Matrix
    char_idf: Matrix
    _hashers: tuple[Any, Any] = field(init=False, repr=False)
    _encoder: SentenceEncoder | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        common: dict[str, Any] = {
            "n_features": self.spec.n_features,
            "alternate_sign": False,
            "norm": None,
            "lowercase": True,
            "dtype": np.float32,
        }
        if self.spec.lemmas is None and not self.spec.polarity_tokens:
            word = HashingVectorizer(
                analyzer="word",
                ngram_range=self.spec.word_ngrams,
                token_pattern=TOKEN_PATTERN,
                **common,
            )
        else:
            word = HashingVectorizer(analyzer=WordAnalyzer(self.spec), **common)
        char = HashingVectorizer(analyzer="char_wb", ngram_range=self.spec.char_ngrams, **common)
        self._hashers = (word, char)
        if self.spec.encoder is not None:
            # "fp32" spelled out: the cache key `use_precision` uses, so the encoder loads once.
            self._encoder = load_encoder(self.spec.encoder, "fp32")

    def use_precision(self, precision: Precision) -> None:
        """Run the sentence encoder (if any) at `precision` (see `serve_app.cpu`)."""
        if self.spec.encoder is not None:
            self._encoder = load_encoder(self.spec.encoder, precision)

    def counts(self, texts: Sequence[str]) -> tuple[Any, Any]:
        """Raw hashed counts per block (training uses them to fit the idf)."""
        word, char = self._hashers
        return word.transform(texts), char.transform(texts)

    @property
    def width(self) -> int:
        """Columns of `transform`'s output (the linear layer's input size)."""
        dense = 0 if self.spec.encoder is None else self.spec.encoder.dim
        return 2 * self.spec.n_features + dense

    def transform(self, texts: Sequence[str]) -> Any:
        """The (n, `width`) CSR matrix the linear layer reads."""
        from scipy import sparse  # type: ignore[import-untyped]  # no stubs installed

        blocks = []
        for counts, idf in zip(self.counts(texts), (self.word_idf, self.char_idf), strict=True):
            counts.data = (np.log(counts.data) + 1.0).astype(np.float32)
            weighted = counts @ sparse.diags(idf)
            norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            blocks.append(sparse.diags((1.0 / norms).astype(np.float32)) @ weighted)
        if self._encoder is not None:
            blocks.append(sparse.csr_matrix(self._encoder.encode(texts)))
        return sparse.hstack(blocks, format="csr", dtype=np.float32)


def ovr_probabilities(scores: Matrix) -> Matrix:
    """One-vs-rest sigmoids normalised to sum to one per row."""
    sig = 1.0 / (1.0 + np.exp(-np.clip(scores, -30.0, 30.0)))
    out: Matrix = (sig / sig.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


@dataclass
class LinearPredictor:
    """A `Predictor` over a hashed n-gram linear model (see the module docstring)."""

    name: str
    revision: str
    labels: tuple[str, ...]
    featurizer: Featurizer
    coef: Matrix
    intercept: Matrix

    def predict(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.empty((0, len(self.labels)), dtype=np.float32)
        features = self.featurizer.transform(texts)
        scores = np.asarray(features @ self.coef.T, dtype=np.float32) + self.intercept
        return ovr_probabilities(scores)


def save_linear(
    path: Path,
    labels: Sequence[str],
    featurizer: Featurizer,
    coef: Matrix,
    intercept: Matrix,
    meta: dict[str, Any],
) -> str:
    """Write an artifact folder; returns its revision (sha256 prefix of the weights file).

    Weights are stored as float16 (halves the size; the scores move by well under 1e-3) and
    compressed, since most hashed features never occur and their weights are zero.
    """
    import hashlib

    path.mkdir(parents=True, exist_ok=True)
    weights = path / WEIGHTS_FILE
    np.savez_compressed(
        weights,
        word_idf=featurizer.word_idf.astype(np.float16),
        char_idf=featurizer.char_idf.astype(np.float16),
        coef=coef.astype(np.float16),
        intercept=intercept.astype(np.float32),
    )
    revision = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    config = {
        "format": FORMAT,
        "labels": list(labels),
        "features": featurizer.spec.to_json(),
        "revision": revision,
        **meta,
    }
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return revision


def read_linear(path: Path) -> tuple[dict[str, Any], Featurizer, Matrix, Matrix]:
    """Read an artifact folder back: its config, featurizer, coef and intercept."""
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} artifact: format={config.get('format')!r}")
    with np.load(path / WEIGHTS_FILE, allow_pickle=False) as npz:
        featurizer = Featurizer(
            FeatureSpec.from_json(config["features"]),
            word_idf=npz["word_idf"].astype(np.float32),
            char_idf=npz["char_idf"].astype(np.float32),
        )
        coef = npz["coef"].astype(np.float32)
        intercept = npz["intercept"].astype(np.float32)
    return config, featurizer, coef, intercept


def load_linear(name: str, spec: ModelSpec) -> LinearPredictor:
    """Load the artifact folder `spec.source` and check its labels against the config."""
    where = f"model {name!r} ({spec.source})"
    path = Path(spec.source)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ModelLoadError(f"{where}: no {CONFIG_FILE} and {WEIGHTS_FILE} in that folder")
    try:
        config, featurizer, coef, intercept = read_linear(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{where}: unreadable artifact ({exc})") from exc
    except EncoderMismatchError as exc:
        raise ModelLoadError(f"{where}: {exc}") from exc
    if tuple(config["labels"]) != spec.labels:
        raise ModelLoadError(
            f"{where}: artifact labels {config['labels']} differ from the configured "
            f"{list(spec.labels)}; the config must list them in the artifact's order"
        )
    # ModelSpec allows only fp32 and int8 for kind linear (a CPU model).
    featurizer.use_precision(cast(Precision, spec.precision))
    return LinearPredictor(
        name=name,
        revision=str(config["revision"]),
        labels=spec.labels,
        featurizer=featurizer,
        coef=coef,
        intercept=intercept,
    )
