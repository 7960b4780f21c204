"""What the app refuses to start with when `HAPPYKUBE_ENVIRONMENT=production`.

Local mode fills gaps so the quick start works (a SQLite file, generated keys, a fixed
pepper, a bootstrap API key, moving model revisions). In a cluster each of those gaps loses
data or weakens a secret without a word, so production names every one and stops:

- each secret the starting part needs (`INGRESS_SECRETS`, `ROUTER_SECRETS`) is set and is
  no template placeholder (`CHANGE_ME...`), peppers have 32+ characters, `DATABASE_URL` is
  PostgreSQL;
- `HAPPYKUBE_BOOTSTRAP_API_KEY` is not set (quick start only);
- every hub model is pinned to a 40-hex commit sha (`main` or a tag can move under a
  running cluster, and the image bakes exactly one revision).

The error is one line naming the variables, never their values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from serve_app.config import AppArgs

# The Ingress reads history (database and its secrets), API keys and rate limits (pepper,
# Redis); the router only the cache (Redis, keyed by the pepper). Model replicas read none.
INGRESS_SECRETS = (
    "DATABASE_URL",
    "HAPPYKUBE_USER_PEPPER",
    "HAPPYKUBE_ENCRYPTION_KEYS",
    "HAPPYKUBE_ACTIVE_KEY_ID",
    "REDIS_URL",
    "HAPPYKUBE_API_KEY_PEPPER",
)
ROUTER_SECRETS = ("REDIS_URL", "HAPPYKUBE_API_KEY_PEPPER")
_PEPPERS = {"HAPPYKUBE_USER_PEPPER", "HAPPYKUBE_API_KEY_PEPPER"}
_PLACEHOLDER = re.compile(r"change[_-]?me|change[_-]?this|placeholder", re.IGNORECASE)
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class ProductionConfigError(RuntimeError):
    """Raised at start-up in production when a secret or a model revision is not fit for it."""


def production_problems(
    environ: Mapping[str, str], *, secrets: Iterable[str] = (), args: AppArgs | None = None
) -> list[str]:
    """Every reason production must not start; empty outside production."""
    if environ.get("HAPPYKUBE_ENVIRONMENT") != "production":
        return []
    problems = []
    for name in secrets:
        value = environ.get(name, "").strip()
        if not value:
            problems.append(f"{name} is missing")
        elif _PLACEHOLDER.search(value):
            problems.append(f"{name} still holds a placeholder")
        elif name in _PEPPERS and len(value) < 32:
            problems.append(f"{name} must be a random secret of 32+ characters")
        elif name == "DATABASE_URL" and not value.startswith(("postgresql", "postgres:")):
            problems.append(f"{name} must name a PostgreSQL database")
    if environ.get("HAPPYKUBE_BOOTSTRAP_API_KEY"):
        problems.append("HAPPYKUBE_BOOTSTRAP_API_KEY is set (local quick start only)")
    for name, spec in (args.models if args else {}).items():
        if not spec.is_local() and not _COMMIT_SHA.match(spec.revision or ""):
            problems.append(f"model {name} revision {spec.revision!r} is not a 40-hex commit sha")
    return problems


def check_production(*, secrets: Iterable[str] = (), args: AppArgs | None = None) -> None:
    """Raise `ProductionConfigError` (one line) if this process's environment is unfit."""
    problems = production_problems(os.environ, secrets=secrets, args=args)
    if problems:
        raise ProductionConfigError("refusing to start in production: " + "; ".join(problems))
