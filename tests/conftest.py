"""Markers by folder (unit, integration, e2e), as LitServe's test suite does, and the shared
fixtures: tiny generated checkpoints, a throwaway database, and a real Ray Serve application."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port

__all__ = ["REPO", "free_port", "wait_ready"]

_TESTS = Path(__file__).parent
REPO = _TESTS.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(_TESTS).parts[0]
        if folder in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random RoBERTa checkpoint per model, with a real BPE tokenizer."""
    from testing.checkpoints import write_default_checkpoints

    out = tmp_path_factory.mktemp("checkpoints")
    return {path.name: path for path in write_default_checkpoints(out, size="tiny")}


@pytest.fixture(scope="session")
def tiny_app_args(tiny_checkpoints: dict[str, Path]) -> dict[str, object]:
    """The `args` of serve_config.yaml, pointed at the tiny checkpoints."""
    import yaml

    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    args: dict[str, object] = config["applications"][0]["args"]
    models = args["models"]
    assert isinstance(models, dict)
    for name, spec in models.items():
        spec.pop("kind", None)
        spec["source"] = str(tiny_checkpoints[name])
    return args


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database, dropped after the session."""
    import psycopg

    from tests.integration.history_env import ADMIN_URL, fresh_database

    try:
        psycopg.connect(ADMIN_URL).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for integration tests ({ADMIN_URL}): {exc}")
    with fresh_database() as url:
        yield url


# The key every test client of the served app sends; the bot e2e test reads the same variable.
TEST_API_KEY = os.environ.get("HAPPYKUBE_E2E_API_KEY", "e2e-bot-key-6f1c0d2b9a")


@pytest.fixture(scope="session")
def app_redis() -> Iterator[object]:
    """A private redis-server for the served app: outage tests stop it, never the shared one."""
    from tests.redis_server import RedisServer

    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_redis_url(app_redis: object) -> str:
    return str(app_redis.url)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def api_headers() -> dict[str, str]:
    return {"X-API-Key": TEST_API_KEY}


_SERVE_HTTP: dict[str, int] = {}  # the port `ray_local` started Serve's HTTP proxy on


@pytest.fixture(scope="session")
def ray_local(pg_url: str, app_redis_url: str) -> Iterator[None]:
    """A fresh local Ray instance for this test session (never an existing cluster).

    Deployments run in worker processes that inherit this environment, so the settings
    the app reads (database and its secrets) are set here, before Ray starts.
    """
    import ray

    from tests.integration.history_env import PEPPER, key_spec

    os.environ.update(
        {
            "DATABASE_URL": pg_url,
            "HAPPYKUBE_USER_PEPPER": PEPPER,
            "HAPPYKUBE_ENCRYPTION_KEYS": key_spec("k1"),
            "HAPPYKUBE_ACTIVE_KEY_ID": "k1",
            "REDIS_URL": app_redis_url,
            "HAPPYKUBE_API_KEY_PEPPER": "test-pepper-" + os.urandom(16).hex(),
            "HAPPYKUBE_BOOTSTRAP_API_KEY": TEST_API_KEY,
            # As kuberay/base/config.yaml and `make serve` set it: the proxy vets request ids.
            "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "serve_app.middleware.proxy_middlewares",
        }
    )
    # Logical CPUs are only for scheduling: several test applications (the tiny graph, the
    # built-in one, a lone classifier) must fit at once; the machine still has its 2 cores.
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    from ray import serve

    # Serve's HTTP options are fixed by whoever starts Serve first: start it here, on a free
    # port, so a test that deploys with `serve.run` before `serve_url` cannot pin port 8000.
    _SERVE_HTTP["port"] = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": _SERVE_HTTP["port"]})
    yield

    serve.shutdown()
    ray.shutdown()


# The args the session's served app was built with (tests/integration/app_env.py reads them).
SERVED_ARGS: dict[str, dict[str, object]] = {}


@pytest.fixture(scope="session")
def serve_url(ray_local: None, tiny_app_args: dict[str, object]) -> Iterator[str]:
    """The real application on tiny checkpoints, served over HTTP on a free port."""
    from ray import serve

    from serve_app.app import build_app
    from serve_app.config import AppArgs

    # A key limit the whole suite (schemathesis included) stays under; tests/integration/
    # test_ratelimit.py checks the default of 100 a minute.
    # A wide gathering window, so tests/integration/test_serve_app.py sees requests gathered.
    args = {
        **tiny_app_args,
        "protection": {
            "key_rate_per_minute": 100_000,
            "address_rate_per_minute": 100_000,  # every test request comes from 127.0.0.1
            "key_cache_s": 1.0,
        },
        "gather": {"max_texts": 8, "wait_s": 0.05},
    }
    SERVED_ARGS["args"] = args
    serve.run(build_app(AppArgs.model_validate(args)), name="happykube")
    url = f"http://127.0.0.1:{_SERVE_HTTP['port']}"
    wait_ready(url)
    yield url
    serve.delete("happykube")


def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")
