"""Load a checkpoint (hub id with pinned revision, or a local path) into a batched predictor.

Every loader returns a `Predictor`: `predict(texts)` takes already-normalised texts and gives
one probability row per text, in input order, with columns in the configured label order.
The serving path (`TextClassifier`) only ever sees this interface.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from serve_app.config import ModelSpec
from serve_app.cpu import Precision, prepare
from serve_app.errors import ModelLoadError
from serve_app.gpu import prepare_cuda, require_cuda

log = logging.getLogger(__name__)
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")

Probabilities = npt.NDArray[np.float32]


class Predictor(Protocol):
    name: str
    revision: str
    labels: tuple[str, ...]

    def predict(self, texts: Sequence[str]) -> Probabilities:
        """Return an (n, len(labels)) array of probabilities for n normalised texts."""
        ...


def length_chunks(lengths: Sequence[int], max_size: int, max_padding: float) -> list[list[int]]:
    """Cut texts, shortest first, into forward-pass chunks that waste little on padding.

    Each chunk is padded to its longest member, so it computes `len(chunk) * longest`
    tokens. A chunk closes at `max_size` texts, or before the next text would make more than
    `max_padding` of its tokens padding. Returns indices into `lengths`.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    chunks: list[list[int]] = []
    chunk: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        if chunk and (
            len(chunk) >= max_size or (real + n) < (1.0 - max_padding) * n * (len(chunk) + 1)
        ):
            chunks.append(chunk)
            chunk, real = [], 0
        chunk.append(i)
        real += n
    if chunk:
        chunks.append(chunk)
    return chunks


def pad_right(
    rows: Sequence[Sequence[int]], pad_id: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Token-id rows as one right-padded (n, longest) id matrix and its attention mask."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, row in enumerate(rows):
        ids[j, : len(row)] = row
        mask[j, : len(row)] = 1
    return ids, mask


@dataclass
class TransformersPredictor:
    """A sequence-classification checkpoint run under `torch.inference_mode()`.

    The texts are tokenised once, sorted by token count and cut into chunks that are padded
    only to their own longest member (`length_chunks`): padding a whole batch of chat
    messages to its longest one spent about a third of the compute on padding. On CPU a
    forward pass of 16 similar texts costs no more per text than one of 32, so small, even
    chunks win: in-process, 32 English messages (GoEmotions dev) went from 35 to 51 per
    second in fp32 and from 56 to 87 in int8 on the 2-core dev machine (BENCHMARKS.md).
    """

    name: str
    revision: str
    labels: tuple[str, ...]
    model: Any
    tokenizer: Any
    max_tokens: int
    chunk_size: int = 16
    max_padding: float = 0.15
    device: str = "cpu"

    def predict(self, texts: Sequence[str]) -> Probabilities:
        import torch

        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)
        rows: list[list[int]] = enc["input_ids"]
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for idx in length_chunks([len(r) for r in rows], self.chunk_size, self.max_padding):
                # Right padding with an attention mask, as the tokenizer pads by default.
                ids, mask = pad_right([rows[i] for i in idx], pad_id)
                logits = self.model(
                    input_ids=torch.from_numpy(ids).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                ).logits
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out


def _check_labels(spec: ModelSpec, num_labels: int, where: str) -> None:
    if num_labels != len(spec.labels):
        raise ModelLoadError(
            f"{where}: checkpoint has {num_labels} labels but the config lists "
            f"{len(spec.labels)} ({', '.join(spec.labels)}); fix `labels` in serve_config.yaml"
        )


def load_transformers(name: str, spec: ModelSpec) -> TransformersPredictor:
    """Load a transformers sequence-classification checkpoint for `spec`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    where = f"model {name!r} ({spec.source})"
    kwargs: dict[str, Any] = {}
    if not spec.is_local():
        kwargs["revision"] = spec.revision
        if not _COMMIT_SHA.match(spec.revision or ""):
            log.warning(
                "model %s: revision %r is a moving ref; pin a commit sha for reproducible serving",
                name,
                spec.revision,
            )
    elif not Path(spec.source).is_dir():
        raise ModelLoadError(f"{where}: local checkpoint directory does not exist")
    if spec.device == "cuda":
        require_cuda(where)  # before reading any weights: a CPU-only node fails at once
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.source, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(spec.source, **kwargs)
    except OSError as exc:
        hint = (
            " HF_HUB_OFFLINE is set and it is not in the local cache: download it first"
            " or point `source` at a local directory."
            if offline and not spec.is_local()
            else ""
        )
        raise ModelLoadError(f"{where}: cannot be loaded.{hint} ({exc})") from exc
    # Trust our own label order, never the checkpoint's id2label: some published configs
    # (feel-it-italian-emotion) key it by label names, which silently mislabels.
    _check_labels(spec, int(model.config.num_labels), where)
    if spec.device == "cuda":
        model = prepare_cuda(model, spec.precision)
    else:
        # ModelSpec allows only fp32 and int8 on the CPU.
        model = prepare(model, cast(Precision, spec.precision), onednn=spec.onednn)
    revision = spec.revision or _local_revision(Path(spec.source))
    return TransformersPredictor(
        name=name,
        revision=revision,
        labels=spec.labels,
        model=model,
        tokenizer=tokenizer,
        max_tokens=spec.max_tokens,
        device=spec.device,
    )


def _local_revision(path: Path) -> str:
    """A stable id of a local checkpoint: its `revision.txt` if present, else `local`."""
    marker = path / "revision.txt"
    if marker.is_file():
        return marker.read_text(encoding="utf-8").strip()
    return "local"


Loader = Callable[[str, ModelSpec], Predictor]


def _load_linear(name: str, spec: ModelSpec) -> Predictor:
    from serve_app.linear_model import load_linear

    return load_linear(name, spec)


LOADERS: dict[str, Loader] = {
    "transformers": load_transformers,
    "linear": _load_linear,
}


def load_predictor(name: str, spec: ModelSpec) -> Predictor:
    """Load the checkpoint `spec` describes with the loader its `kind` names."""
    log.info("loading model %s from %s (kind=%s)", name, spec.source, spec.kind)
    return LOADERS[spec.kind](name, spec)
