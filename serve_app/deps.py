"""Dependencies of the routes: the one place that knows where the app's collaborators live.

`create_app(services)` (serve_app/api.py) attaches one `Services` to the app it builds; routes
and guards reach it only through the `Annotated` dependencies here, never through `app.state`.
The guards run in this order: the client address's rate, charged only when the key store
would be asked (429, before any database work), the key (401), its scope (403), the key's
rate (429), then, for a call that names a user, that user's rate (429). A request costs one
unit of the key's rate per text: the batch route charges after counting its texts.
"""

# No `from __future__ import annotations`: the dependency `require_scope` returns is a
# closure, and FastAPI resolves its annotations at run time in the replica.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from db.session import Database
from serve_app.auth import HEADER, Caller, KeyVerifier
from serve_app.config import AppArgs
from serve_app.errors import ForbiddenError, StorageUnavailableError, UnauthorizedError
from serve_app.gather import RouterClient
from serve_app.keys import HISTORY_READ, HISTORY_WRITE
from serve_app.ratelimit import Quota, RateLimiter
from serve_app.redis_conn import RedisLink


@dataclass(frozen=True)
class Services:
    """What the routes work with, built once per replica (or per test) and handed to the app."""

    args: AppArgs
    keys: KeyVerifier
    limiter: RateLimiter
    redis: RedisLink
    router: RouterClient
    database: Database | None = None
    metrics: Any = None  # serve_app.observability.replica_metrics(), where metrics are kept

    def __repr__(self) -> str:  # the collaborators hold secrets; say only what is wired
        wired = [name for name in ("database", "metrics") if getattr(self, name) is not None]
        return f"Services(models={sorted(self.args.models)}, with={wired})"


def attach(app: FastAPI, services: Services) -> None:
    """Give `app` its collaborators (called once, by the factory)."""
    app.state.services = services


# Every dependency is `async def`, however trivial: FastAPI runs a plain `def` one in its thread
# pool, two thread switches per request (tests/integration/test_app_factory.py).
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_args(services: ServicesDep) -> AppArgs:
    return services.args


async def get_router(services: ServicesDep) -> RouterClient:
    return services.router


def database_of(services: Services) -> Database:
    """The history database; 503 where this process has none."""
    if services.database is None:
        raise StorageUnavailableError("the history database is not configured")
    return services.database


async def get_database(services: ServicesDep) -> Database:
    return database_of(services)


async def get_caller(request: Request) -> Caller:
    """The authenticated key (set by the route's guard): its client owns the histories."""
    caller: Caller | None = getattr(request.state, "api_key", None)
    if caller is None:  # a route without a guard: refused rather than served as nobody
        raise UnauthorizedError(f"missing {HEADER} header")
    return caller


ArgsDep = Annotated[AppArgs, Depends(get_args)]
RouterDep = Annotated[RouterClient, Depends(get_router)]
DatabaseDep = Annotated[Database, Depends(get_database)]
CallerDep = Annotated[Caller, Depends(get_caller)]


async def limit_address(request: Request, limiter: RateLimiter) -> None:
    """Charge the client address one unit: a request the key store would have to answer."""
    host = request.client.host if request.client else "unknown"
    bucket = limiter.address_bucket(host)
    await limiter.enforce(request, bucket, limiter.address_quota, "client address", shown=False)


async def authenticate(request: Request, services: Services) -> Caller:
    """Check the request's key; set `request.state.api_key` for the routes (`CallerDep`).
    A request the key store would have to answer first costs its client address a unit."""

    async def admit() -> None:
        await limit_address(request, services.limiter)

    key = request.headers.get(HEADER)
    caller = await services.keys.verify(key, services.database, admit=admit)
    request.state.api_key = caller
    return caller


def ensure_scope(request: Request, scope: str) -> None:
    """Raise 403 unless the authenticated key holds `scope`."""
    caller: Caller = request.state.api_key
    if not caller.allows(scope):
        raise ForbiddenError(f"this API key lacks the {scope!r} scope", scope=scope)


async def limit_key(request: Request, limiter: RateLimiter, caller: Caller, cost: int = 1) -> None:
    """Charge the key's own quota (or the default) `cost` units, one per text."""
    quota = Quota(caller.rate_limit) if caller.rate_limit else limiter.key_quota
    await limiter.enforce(request, f"key:{caller.key_id}", quota, "API key", cost=cost)


async def limit_user(request: Request, limiter: RateLimiter, client: str, user_id: str) -> None:
    """Apply the per-end-user quota to a call that names a user (one bucket per client's user,
    whichever of the client's keys calls)."""
    await limiter.enforce(request, limiter.user_bucket(client, user_id), limiter.user_quota, "user")


def require_scope(
    scope: str, *, charged: bool = True
) -> Callable[[Request, Services], Awaitable[None]]:
    """Route dependency: a valid key (401) holding `scope` (403) within its rate (429).
    `charged=False`: the route charges the key itself (`charge_key`), knowing the cost."""

    async def dependency(request: Request, services: ServicesDep) -> None:
        caller = await authenticate(request, services)
        ensure_scope(request, scope)
        if charged:
            await limit_key(request, services.limiter, caller)

    return dependency


async def charge_key(request: Request, services: Services, cost: int) -> None:
    """Charge the authenticated key `cost` units (429 or 422 when they do not fit)."""
    await limit_key(request, services.limiter, request.state.api_key, cost)


async def require_history_access(request: Request, services: ServicesDep) -> None:
    """Dependency of the users API: read scope for GET, write scope otherwise, and the
    per-user rate limit of the user named in the path."""
    scope = HISTORY_READ if request.method in {"GET", "HEAD"} else HISTORY_WRITE
    await require_scope(scope)(request, services)
    user_id = request.path_params.get("user_id")
    if user_id:
        await limit_user(request, services.limiter, request.state.api_key.client, str(user_id))


async def require_storing(request: Request, services: Services, user_id: str) -> None:
    """For an analysis that stores its result: the write scope and the user's rate limit."""
    ensure_scope(request, HISTORY_WRITE)
    await limit_user(request, services.limiter, request.state.api_key.client, user_id)
