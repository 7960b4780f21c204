"""Markers by folder (unit, integration, e2e), as LitServe's test suite does."""

from __future__ import annotations

from pathlib import Path

import pytest

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(_TESTS).parts[0]
        if folder in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, folder))


# --- Shared fixtures: tiny generated checkpoints and a real Ray Serve application ---------

import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import httpx  # noqa: E402

REPO = _TESTS.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random RoBERTa checkpoint per model, with a real BPE tokenizer."""
    from serve_app.checkpoints import write_default_checkpoints

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


@pytest.fixture(scope="session")
def ray_local(pg_url: str) -> Iterator[None]:
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
        }
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_url(ray_local: None, tiny_app_args: dict[str, object]) -> Iterator[str]:
    """The real application on tiny checkpoints, served over HTTP on a free port."""
    from ray import serve

    from serve_app.app import build_app
    from serve_app.config import AppArgs

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(AppArgs.model_validate(tiny_app_args)), name="happykube")
    url = f"http://127.0.0.1:{port}"
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
