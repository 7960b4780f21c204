"""Ingress: the deployment that serves the HTTP API (serve_app/api.py) on each replica.

Its constructor opens what the routes need (the history database, the Redis link, the key
verifier, the rate limiter, a client of the language router) once, from the serve config's
`args` and the process's settings; Serve then asks `__serve_build_asgi_app__` for the app,
which the factory builds over exactly those collaborators. No module-level app: `serve build`
and every process that imports this module build nothing.
"""

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.api import create_app
from serve_app.auth import KeyVerifier
from serve_app.config import AppArgs, ProtectionSettings
from serve_app.deps import Services
from serve_app.gather import RouterClient
from serve_app.observability import replica_metrics
from serve_app.production import INGRESS_SECRETS, check_production
from serve_app.ratelimit import RateLimiter
from serve_app.redis_conn import link_from_settings


def open_services(
    args: AppArgs, router: RouterClient, settings: ProtectionSettings, *, metrics: Any = None
) -> Services:
    """The collaborators of one app, from its args and settings (the database from the env)."""
    from db.session import Database

    protection = args.protection
    redis = link_from_settings(settings, protection)
    bootstrap = settings.bootstrap_api_key
    return Services(
        args=args,
        keys=KeyVerifier(
            settings.pepper(),
            cache_s=protection.key_cache_s,
            grace_s=protection.key_grace_s,
            bootstrap_key=bootstrap.get_secret_value() if bootstrap else None,
        ),
        limiter=RateLimiter(redis, protection, settings.pepper()),
        redis=redis,
        router=router,
        # The history database (DATABASE_URL, or the local SQLite file); see db/settings.py.
        database=Database.from_settings(),
        metrics=metrics,
    )


@serve.deployment(
    max_ongoing_requests=256,
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress()
class Ingress:
    def __init__(self, args: AppArgs, router: DeploymentHandle[Any]) -> None:
        check_production(secrets=INGRESS_SECRETS)
        self.settings = ProtectionSettings()  # read once per replica
        client = RouterClient(router, max_texts=args.gather.max_texts, wait_s=args.gather.wait_s)
        self.services = open_services(args, client, self.settings, metrics=replica_metrics())

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.services)
