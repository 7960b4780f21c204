"""Logs and metrics: structlog configured once per process, and our Prometheus metrics.

Logs: JSON lines in production (`HAPPYKUBE_LOG_FORMAT=json`, or `HAPPYKUBE_ENVIRONMENT=
production`), readable console lines locally. Every line carries the Serve request id, which
Serve itself carries from the proxy through the ingress, router and model replicas, so one
request can be followed across processes. Message text and user ids never belong in a log
line; as a second line of defence, fields with such names are redacted before rendering.

Metrics: created with `ray.serve.metrics`, so Ray exports them with its own (Prometheus
format, each node's metrics export port) next to Serve's built-in ones, tagged with the
deployment, replica and application. The Grafana dashboard in kuberay/grafana/ reads them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Field names that would carry a message or an identity: never rendered.
REDACTED_FIELDS = frozenset({"text", "texts", "message_text", "user_id", "telegram_id", "chat_id"})
_configured = False


def request_id() -> str:
    """The id of the Serve request being handled here, or '-' outside a request."""
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or "-"
    except Exception:  # outside Ray (CLI, tests): there is no request context
        return "-"


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.setdefault("request_id", request_id())
    return event


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in REDACTED_FIELDS & event.keys():
        event[key] = "[redacted]"
    return event


def log_format() -> str:
    fmt = os.environ.get("HAPPYKUBE_LOG_FORMAT", "").lower()
    if fmt in {"json", "console"}:
        return fmt
    return "json" if os.environ.get("HAPPYKUBE_ENVIRONMENT") == "production" else "console"


def configure_logging(fmt: str | None = None) -> None:
    """Configure structlog for this process (idempotent: Ray builds many objects per process)."""
    global _configured
    if _configured and fmt is None:
        return
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if (fmt or log_format()) == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_request_id,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str) -> Any:
    configure_logging()
    return structlog.get_logger(name)


_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class Metrics:
    """Our metrics; build one per replica, in its constructor (Ray needs a running worker)."""

    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Histogram

        self.requests = Counter(
            "happykube_requests",
            description="API requests by route, status and detected language.",
            tag_keys=("path", "status", "language"),
        )
        self.inference_seconds = Histogram(
            "happykube_model_inference_seconds",
            description="Time of one batched forward pass.",
            boundaries=_LATENCY_BUCKETS,
            tag_keys=("model",),
        )
        self.batch_size = Histogram(
            "happykube_model_batch_size",
            description="Texts per forward pass.",
            boundaries=_BATCH_BUCKETS,
            tag_keys=("model",),
        )
        self.cache = Counter(
            "happykube_cache_lookups",
            description="Prediction cache lookups by result (hit, miss, error).",
            tag_keys=("result",),
        )
        self.rate_limited = Counter(
            "happykube_rate_limited",
            description="Requests refused by a rate limit, by scope (key, user).",
            tag_keys=("scope",),
        )
        self.db_write_seconds = Histogram(
            "happykube_db_write_seconds",
            description="Time to store one analysed message (encrypt + commit).",
            boundaries=_LATENCY_BUCKETS,
        )
