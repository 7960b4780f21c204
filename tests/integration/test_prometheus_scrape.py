"""A real Prometheus (the Debian package) scrapes the served application's metrics, and every
PromQL expression of the Grafana dashboard (kuberay/grafana/happykube-dashboard.json) returns
data through Prometheus's HTTP API after a few requests."""

from __future__ import annotations

import json
import math
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, free_port

DASHBOARD = REPO / "kuberay" / "grafana" / "happykube-dashboard.json"
PROMETHEUS = shutil.which("prometheus")


def dashboard_queries() -> list[str]:
    """Every `expr` of every panel (nested rows included), in dashboard order."""

    def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for panel in node.get("panels", []):
            yield panel
            yield from panels(panel)

    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in panels(board) for t in p.get("targets", []) if t.get("expr")]


@pytest.fixture(scope="module")
def prometheus(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus on a free port, scraping the Ray node's metrics export port every second."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install -y prometheus)")
    import ray

    target = f"127.0.0.1:{ray._private.worker._global_node.metrics_export_port}"
    home = tmp_path_factory.mktemp("prometheus")
    (home / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: ray\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    with (home / "log").open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start: {(home / 'log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _traffic(client: httpx.Client) -> None:
    """One round of what the dashboard shows: Italian and English answers, a stored record,
    a cache hit and a miss, 404s and the per-user limit's 429s."""
    user_id = str(9_000_000_000 + secrets.randbelow(999_999_999))
    for body in (
        {"text": "Che bella giornata, sono felice", "user_id": user_id},
        {"text": "Che bella giornata, sono felice"},  # a hit after the first round
        {"text": f"Sono molto triste oggi {secrets.token_hex(4)}"},  # a miss
        {"text": f"I am so happy about this {secrets.token_hex(4)}"},
    ):
        assert client.post("/api/v1/emotion", json=body).status_code == 200
    codes = {client.get(f"/api/v1/users/{user_id}x/report").status_code for _ in range(35)}
    assert codes == {404, 429}, codes


def _answers(prometheus: str, expr: str) -> bool:
    """Whether the expression returns at least one series with a number (not NaN)."""
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert reply.status_code == 200, f"{expr}: {reply.text}"
    result = reply.json()["data"]["result"]
    return any(not math.isnan(float(series["value"][1])) for series in result)


def test_every_dashboard_query_returns_data(
    prometheus: str, serve_url: str, api_headers: dict[str, str]
) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    missing = queries
    # Ray exports on its own period (seconds) and rate() needs two scrapes that differ:
    # keep the traffic going until every query answers, with a deadline.
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=serve_url, headers=api_headers, timeout=30) as client:
        while missing and time.monotonic() < deadline:
            _traffic(client)
            time.sleep(2)
            missing = [expr for expr in queries if not _answers(prometheus, expr)]
    assert not missing, f"no data for {len(missing)} of {len(queries)} queries: {missing}"
