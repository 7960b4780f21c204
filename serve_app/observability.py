"""Logs and metrics: structlog configured once per process, and our Prometheus metrics.

Logs: JSON lines in production (`HAPPYKUBE_LOG_FORMAT=json`, or `HAPPYKUBE_ENVIRONMENT=
production`), readable console lines locally; an event name plus key/value fields. Every line
carries the Serve request id, which Serve takes from the caller's `X-Request-ID` (or makes)
and carries from the proxy through the ingress, router and model replicas, so one request can
be followed across processes; a model's per-batch line names the ids of every request in the
batch (`request_ids`). Lines written in a replica name its deployment. Message text and user
ids never belong in a log line; as a second line of defence, fields with such names are
redacted before rendering.

Metrics: created with `ray.serve.metrics`, so Ray exports them with its own (Prometheus
format, each node's metrics export port, names prefixed `ray_`) next to Serve's built-in
ones, tagged with the deployment, replica and application. The Grafana dashboard in
kuberay/grafana/ reads them. Outside a Serve replica (CLI, tests that build a cache or a rate
limiter directly) `replica_metrics()` hands out metrics that record nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol

import structlog

# Field names that would carry a message or an identity: never rendered.
REDACTED_FIELDS = frozenset({"text", "texts", "message_text", "user_id", "telegram_id", "chat_id"})
_configured = False


def _serve_context() -> Any:
    # Only where Serve is already loaded: a CLI process must not import Ray to log a line.
    return sys.modules.get("ray.serve.context")


def request_id() -> str:
    """The id of the Serve request being handled here, or '-' outside a request."""
    context = _serve_context()
    try:
        return (context and context._get_serve_request_context().request_id) or "-"
    except Exception:  # outside Ray (CLI, tests): there is no request context
        return "-"


def replace_request_id(new_id: str) -> str:
    """Make `new_id` the Serve request id for the rest of this request (handle calls made
    from here on carry it to the replicas they reach); return it. Outside Serve, a no-op."""
    context = _serve_context()
    if context is not None:  # outside Ray (CLI, tests) there is no request context
        current = context._get_serve_request_context()
        context._serve_request_context.set(dataclasses.replace(current, request_id=new_id))
    return new_id


def batch_request_ids() -> list[str]:
    """The request ids of the batch a `@serve.batch` method is running, or [] outside one.

    Serve sets the contexts of the batched requests around each call of the batch method
    (`ray.serve.context._get_serve_batch_request_context`, Ray 2.60).
    """
    context = _serve_context()
    try:
        batch = context._get_serve_batch_request_context() if context else []
        return [ctx.request_id for ctx in batch if ctx.request_id]
    except Exception:  # a Ray without batch request contexts
        return []


@contextmanager
def carry_batch_request_ids() -> Iterator[None]:
    """Inside a `@serve.batch` method: handle calls made in the block carry the request ids
    of the whole batch, joined by commas, as their Serve request id.

    A call made for a gathered batch belongs to no one request, so Serve would give it a
    fresh id and the replicas it reaches would log an id no caller knows. With this, their
    log lines (and their own batches' `request_ids`) name every request of the batch. Outside
    a batch it changes nothing.
    """
    context, ids = _serve_context(), batch_request_ids()
    if context is None or not ids:
        yield
        return
    first = context._get_serve_batch_request_context()[0]
    carried = context._RequestContext(
        route=first.route, request_id=",".join(ids), app_name=first.app_name
    )
    token = context._serve_request_context.set(carried)
    try:
        yield
    finally:
        context._serve_request_context.reset(token)


def _replica_context() -> Any:
    context = _serve_context()
    try:
        return context._get_internal_replica_context() if context else None
    except Exception:
        return None


def _add_request_context(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if "request_ids" not in event:  # a batch line names its requests instead
        event.setdefault("request_id", request_id())
    replica = _replica_context()
    if replica is not None:
        event.setdefault("deployment", replica.deployment)
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
            _add_request_context,
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


class CounterLike(Protocol):
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...


class HistogramLike(Protocol):
    def observe(self, value: float, tags: dict[str, str] | None = None) -> None: ...


class _Off:
    """A metric that records nothing: what code running outside a Serve replica gets."""

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        pass

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        pass


class Metrics:
    """Our metrics; build them in a replica's constructor (Ray needs a running worker).

    Outside a Serve replica every metric is a no-op, so a cache or a rate limiter built by a
    test or the CLI records nothing and needs no Ray. Prefer `replica_metrics()`, which
    shares one instance between the objects of a replica.
    """

    requests: CounterLike
    inference_seconds: HistogramLike
    batch_size: HistogramLike
    cache: CounterLike
    rate_limited: CounterLike
    db_write_seconds: HistogramLike

    def __init__(self) -> None:
        self.recording = _replica_context() is not None
        if not self.recording:
            off = _Off()
            self.requests = self.cache = self.rate_limited = off
            self.inference_seconds = self.batch_size = self.db_write_seconds = off
            return
        from ray.serve.metrics import Counter, Histogram

        self.requests = Counter(
            "happykube_requests",
            description="API requests by route template, status and detected language.",
            tag_keys=("route", "status", "language"),
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


_shared: Metrics | None = None


def replica_metrics() -> Metrics:
    """This replica's metrics, created on the first call (make it from a constructor).

    Outside a replica: a fresh no-op `Metrics`, never cached, so nothing is registered.
    """
    global _shared
    if _shared is None:
        metrics = Metrics()
        if not metrics.recording:
            return metrics
        _shared = metrics
    return _shared
