"""Configuration: `AppArgs` from the `args` of serve_config.yaml, `Settings` from the environment.

Deployment knobs (model ids, revisions, label orders, batch sizes, autoscaling) live in the
serve config; secrets (database URL, Redis URL, keys, peppers) live only in the environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from serve_app import registry
from serve_app.schemas import Language

MODEL_NAMES = registry.NAMES

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
    precision: Literal["fp32", "int8", "fp16", "bf16"] = Field(
        default="fp32",
        description=(
            "fp32 (oneDNN kernels on CPU) or int8 (CPU only: dynamic quantisation of the Linear"
            " layers: faster, small accuracy change; see BENCHMARKS.md); fp16 or bf16 with"
            " `device: cuda` only. For kind linear it applies to the sentence encoder, if the"
            " artifact has one."
        ),
    )
    onednn: bool = Field(
        default=True,
        description=(
            "fp32 on the CPU: run the Linear layers on oneDNN kernels (same results to about"
            " 1e-7, faster here); false keeps torch's stock kernels."
        ),
    )
    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description=(
            "Where the model runs. cuda needs a CUDA build of torch and a visible GPU (the"
            " `gpu` image target, serve_config.production-gpu.yaml); without one the replica"
            " fails at load with a clear error. Transformers checkpoints only."
        ),
    )

    def is_local(self) -> bool:
        """True when `source` names a local directory rather than a hub id."""
        return Path(self.source).exists() or not _HUB_ID.match(self.source)

    @model_validator(mode="after")
    def _hub_ids_are_pinned(self) -> ModelSpec:
        if not self.is_local() and not self.revision:
            raise ValueError(f"hub model {self.source!r} needs a pinned revision")
        return self

    @model_validator(mode="after")
    def _precision_fits_the_device(self) -> ModelSpec:
        # int8 is a CPU kernel (fbgemm); half precision is only faster on a GPU's tensor cores.
        if self.device == "cpu" and self.precision in {"fp16", "bf16"}:
            raise ValueError(f"precision {self.precision} needs `device: cuda`")
        if self.device == "cuda" and self.precision == "int8":
            raise ValueError("precision int8 is CPU-only; use fp16 or bf16 with `device: cuda`")
        if self.device == "cuda" and self.kind != "transformers":
            raise ValueError(f"`device: cuda` needs kind transformers, not {self.kind}")
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


class ProtectionArgs(BaseModel):
    """Rate limits, the prediction cache and the Redis timeouts (not secrets: those are env).

    Rates are units a minute; a unit is one text, so a batch of n texts costs n (a batch
    larger than the whole quota is refused with 422 `batch_exceeds_rate`). 100 a minute per
    key is the old system's figure; 30 a minute per end user is a fast typist's pace with
    room for a burst of messages. Requests that would make the key store work (a missing or
    unknown key, or one this replica has not verified) cost one unit of their client address's
    rate, checked before the store is asked (serve_app/ratelimit.py).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_rate_per_minute: int = Field(default=100, ge=1, description="Default of every key.")
    user_rate_per_minute: int = Field(default=30, ge=1)
    address_rate_per_minute: int = Field(
        default=60, ge=1, description="Key-store lookups a minute per client address."
    )
    cache_enabled: bool = Field(default=True, description="Off: every text reaches a model.")
    cache_ttl_s: int = Field(
        default=86_400, ge=1, le=7 * 86_400, description="Life of a cached prediction (s)."
    )
    redis_timeout_s: float = Field(default=0.25, gt=0.0, le=5.0)
    # How long a verified key is trusted before the database is asked again: a revocation
    # takes at most this long to bite. Past it, a key seen before survives a database outage.
    key_cache_s: float = Field(default=10.0, ge=0.0, le=300.0)
    # While the key store does not answer, a key it said yes to is trusted until this long
    # after that yes (or `key_cache_s`, if longer); then 503, never 200 (serve_app/auth.py).
    key_grace_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    # Several environments can share one Redis under different prefixes.
    redis_prefix: str = Field(default="hk:", min_length=1, max_length=64)


class GatherArgs(BaseModel):
    """How the ingress gathers concurrent single-message requests into one router call.

    Each hop between deployments costs about as much CPU as a forward pass of a small model,
    so the ingress holds a request up to `wait_s` for others to join it (at most `max_texts`)
    and sends them to the router together; the router then calls each model once for all of
    them. `max_texts: 1` turns gathering off (one router call per request).

    16, not more: a model replica runs at most 16 texts per forward pass anyway
    (`TransformersPredictor.chunk_size`), and a larger gather sends a whole burst to one
    replica while another waits. With two English replicas and 32 requests in flight, 16
    against 32 gave 128 against 122 msg/s (int8) and 52 against 45 (fp32), the Italian path
    26.4 against 25.0 (`happykube bench` paths, alternating runs, 2026-11-26).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_texts: int = Field(default=16, ge=1, le=256)
    wait_s: float = Field(default=0.005, ge=0.0, le=0.1)


class AppArgs(BaseModel):
    """The application `args` of serve_config.yaml, validated by Ray's typed app builder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, ModelSpec]
    languages: LanguageArgs = LanguageArgs()
    max_text_chars: int = Field(default=2000, ge=1)
    max_batch_texts: int = Field(default=64, ge=1, le=1024)
    max_body_bytes: int = Field(default=262_144, ge=1024)
    protection: ProtectionArgs = ProtectionArgs()
    gather: GatherArgs = GatherArgs()
    # Browser origins allowed to call the API; none (the default) sends no CORS header at all.
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        unknown = set(models) - set(MODEL_NAMES)
        if unknown:
            raise ValueError(f"unknown model names {sorted(unknown)}; known: {MODEL_NAMES}")
        missing = set(registry.REQUIRED) - set(models)
        if missing:
            raise ValueError(f"missing required models: {sorted(missing)}")
        return models


# Variables that became serve config `args` (not secrets): where each one went.
MOVED_TO_ARGS = {
    "HAPPYKUBE_CORS_ORIGINS": "args.cors_origins (a list of origins)",
    "HAPPYKUBE_REDIS_PREFIX": "args.protection.redis_prefix",
    "HAPPYKUBE_ONEDNN": "args.models.<name>.onednn",
}


def refuse_moved_variables() -> None:
    """Raise `ValueError` naming the new place of a moved variable that is still set."""
    for name, place in MOVED_TO_ARGS.items():
        if os.environ.get(name):
            raise ValueError(f"{name} is no longer read: set {place} in the serve config")


class ProtectionSettings(BaseSettings):
    """The protection part of the environment: Redis, the API key pepper, CORS.

    `REDIS_URL` (default `redis://127.0.0.1:6379/0`). `HAPPYKUBE_API_KEY_PEPPER`: HMAC key
    of the stored API key hashes and, derived from it, of the cache keys and user buckets;
    required (32+ characters) in production, a fixed local value otherwise.
    `HAPPYKUBE_BOOTSTRAP_API_KEY`: a key registered at start-up (quick start only).
    The non-secret knobs that were variables here live in the serve config's `args` now;
    setting one of the old variables refuses to start, naming its new place (`MOVED_TO_ARGS`).
    """

    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), validation_alias="REDIS_URL"
    )
    api_key_pepper: SecretStr | None = Field(
        default=None, validation_alias="HAPPYKUBE_API_KEY_PEPPER"
    )
    bootstrap_api_key: SecretStr | None = Field(
        default=None, validation_alias="HAPPYKUBE_BOOTSTRAP_API_KEY"
    )
    environment: Literal["local", "production"] = Field(
        default="local", validation_alias="HAPPYKUBE_ENVIRONMENT"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_moved_variable(cls, data: Any) -> Any:
        refuse_moved_variables()
        return data

    @model_validator(mode="after")
    def _production_has_a_pepper(self) -> ProtectionSettings:
        pepper = self.api_key_pepper.get_secret_value() if self.api_key_pepper else ""
        if self.environment == "production" and (len(pepper) < 32 or "CHANGE_ME" in pepper):
            raise ValueError("HAPPYKUBE_API_KEY_PEPPER must be a random secret of 32+ characters")
        key = self.bootstrap_api_key.get_secret_value() if self.bootstrap_api_key else None
        if key is not None and len(key) < 16:
            raise ValueError("HAPPYKUBE_BOOTSTRAP_API_KEY must have 16+ characters")
        return self

    def pepper(self) -> bytes:
        """The pepper, or in local mode a fixed one: keys are 256-bit random either way."""
        if self.api_key_pepper is None:
            return b"happykube-local-api-key-pepper"
        return self.api_key_pepper.get_secret_value().encode("utf-8")
