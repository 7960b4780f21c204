"""Configuration: `AppArgs` from the `args` of serve_config.yaml, `Settings` from the environment.

Deployment knobs (model ids, revisions, label orders, batch sizes, autoscaling) live in the
serve config; secrets (database URL, Redis URL, keys, peppers) live only in the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.schemas import Language

MODEL_NAMES = ("it_emotion", "en_emotion", "it_sentiment", "en_sentiment")

# A hub id looks like "owner/name"; anything else is a local path (relative to the working dir).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSpec(BaseModel):
    """One model: where its checkpoint comes from and what its outputs mean."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="A hub id (owner/name) or a local directory.")
    revision: str | None = Field(
        default=None, description="Pinned commit or tag; required for hub ids."
    )
    kind: Literal["transformers", "linear"] = Field(
        default="transformers",
        description="Which loader reads the checkpoint; both give the same predict interface.",
    )
    labels: tuple[str, ...] = Field(
        min_length=2,
        description="Output order of the checkpoint's logits. Checked against num_labels.",
    )
    max_tokens: int = Field(default=128, ge=8, le=512, description="Truncation limit.")

    def is_local(self) -> bool:
        """True when `source` names a local directory rather than a hub id."""
        return Path(self.source).exists() or not _HUB_ID.match(self.source)

    @model_validator(mode="after")
    def _hub_ids_are_pinned(self) -> ModelSpec:
        if not self.is_local() and not self.revision:
            raise ValueError(f"hub model {self.source!r} needs a pinned revision")
        return self


class LanguageArgs(BaseModel):
    """How the router decides which language a text is in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    supported: tuple[Language, ...] = (Language.IT, Language.EN)
    # Neighbours are detected so that they are refused by name instead of misrouted.
    candidates: tuple[str, ...] = ("it", "en", "es", "fr", "de", "pt")
    # Below this confidence (or when lingua gives none, as for emoji-only text) the router
    # uses the request's language hint, then `fallback`.
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    fallback: Language = Language.IT

    @model_validator(mode="after")
    def _supported_are_candidates(self) -> LanguageArgs:
        missing = {str(lang) for lang in self.supported} - set(self.candidates)
        if missing:
            raise ValueError(f"supported languages missing from candidates: {sorted(missing)}")
        return self


class AppArgs(BaseModel):
    """The application `args` of serve_config.yaml, validated by Ray's typed app builder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, ModelSpec]
    languages: LanguageArgs = LanguageArgs()
    max_text_chars: int = Field(default=2000, ge=1)
    max_batch_texts: int = Field(default=64, ge=1, le=1024)
    max_body_bytes: int = Field(default=262_144, ge=1024)

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        unknown = set(models) - set(MODEL_NAMES)
        if unknown:
            raise ValueError(f"unknown model names {sorted(unknown)}; known: {MODEL_NAMES}")
        required = {"it_emotion", "en_emotion", "it_sentiment"}
        missing = required - set(models)
        if missing:
            raise ValueError(f"missing required models: {sorted(missing)}")
        return models
