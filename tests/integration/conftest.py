"""History-database fixtures (the session's throwaway database, `pg_url`, is in tests/conftest.py).

Each session creates `happykube_test_<random>` on the local server, runs the Alembic
migrations from empty, and drops it at the end, so parallel runs never meet.
`HAPPYKUBE_TEST_POSTGRES` points at another server (default: the local `test` database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from db.session import Database
from tests.integration.app_env import Callers, ServedGraph, history_client
from tests.integration.history_env import make_secrets


@pytest.fixture
async def database(pg_url: str) -> AsyncIterator[Database]:
    """A `Database` on the session's PostgreSQL with the test pepper and key k1."""
    db = Database(pg_url, make_secrets())
    yield db
    await db.dispose()


@pytest.fixture
async def callers(
    database: Database, served_graph: ServedGraph
) -> AsyncIterator[tuple[httpx.AsyncClient, Callers]]:
    """A client of the real app acting as the caller "me", and the callers (app_env.py)."""
    async with history_client(served_graph, database) as both:
        yield both


@pytest.fixture(scope="session")
def served_graph(serve_url: str) -> ServedGraph:
    """The served app's router, for `real_app` (the ingress's args: `SERVED_ARGS`)."""
    from ray import serve

    from serve_app.config import AppArgs
    from tests.conftest import SERVED_ARGS

    router = serve.get_deployment_handle("LanguageRouter", app_name="happykube")
    return ServedGraph(router, AppArgs.model_validate(SERVED_ARGS["args"]))
