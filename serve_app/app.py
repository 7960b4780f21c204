"""`build_app(args)`: the bound deployment graph, built from serve_config.yaml's `args`.

    Ingress (FastAPI) -> LanguageRouter -> it_emotion | it_sentiment | en_emotion [| en_sentiment]

Each model is the one `TextClassifier` class bound under its own deployment name, so the
serve config tunes (autoscaling, batch size, CPUs) each model separately by that name.
"""

# No `from __future__ import annotations` here: Ray reads the builder's parameter annotation
# at run time to validate `args` as `AppArgs`; a string annotation would skip validation.

from typing import Any

from ray.serve import Application

from serve_app.classifier import TextClassifier
from serve_app.config import AppArgs, refuse_moved_variables
from serve_app.ingress import Ingress
from serve_app.production import check_production
from serve_app.router import LanguageRouter


def build_app(args: AppArgs) -> Application:
    """Bind the graph: one classifier deployment per configured model, a router, an ingress."""
    refuse_moved_variables()
    check_production(args=args)
    return bind_graph(args)


def bind_graph(args: AppArgs, options: dict[str, dict[str, Any]] | None = None) -> Application:
    """Bind the graph with per-deployment `.options(...)`, keyed by deployment name.

    `serve run` applies the config's `deployments:` section on top of this; code that deploys
    without a config file (the benchmark, tests) passes the same settings as `options`.
    """
    opts = options or {}
    router = bind_router(args, opts)
    return Ingress.options(**opts.get("Ingress", {})).bind(args, router)


def bind_router(args: AppArgs, options: dict[str, dict[str, Any]] | None = None) -> Application:
    """The router and its model deployments: the graph below the ingress.

    Tests run this part in-process (`serve.run(..., _local_testing_mode=True)`) under the
    real app from `serve_app.api.create_app`.
    """
    opts = options or {}
    models = {
        name: TextClassifier.options(name=name, **opts.get(name, {})).bind(name, spec)
        for name, spec in args.models.items()
    }
    return LanguageRouter.options(**opts.get("LanguageRouter", {})).bind(
        args.languages, dict(args.models), models, args.protection
    )
