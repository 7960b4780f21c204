"""Our metrics reach Ray's Prometheus export of the local node, with the tags the Grafana
dashboard (kuberay/grafana/happykube-dashboard.json) queries."""

import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@pytest.fixture(scope="module")
def client(serve_url: str, api_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve_url, headers=api_headers, timeout=30) as http:
        yield http


def _metrics_url() -> str:
    import ray

    port = ray._private.worker._global_node.metrics_export_port
    return f"http://127.0.0.1:{port}/metrics"


def _samples() -> list[Sample]:
    try:
        text = httpx.get(_metrics_url(), timeout=10).text
    except httpx.HTTPError:
        return []
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _has(samples: list[Sample], name: str, **labels: str) -> bool:
    return any(
        s.name == name and s.value > 0 and labels.items() <= s.labels.items() for s in samples
    )


def test_requests_cache_rate_limits_and_db_writes_are_exported(client: httpx.Client) -> None:
    user_id = str(9_000_000_000 + secrets.randbelow(999_999_999))
    text = f"Che bella sorpresa, sono contenta {secrets.token_hex(4)}"
    first = client.post("/api/v1/emotion", json={"text": text, "user_id": user_id})
    assert first.status_code == 200, first.text
    assert client.post("/api/v1/emotion", json={"text": text}).status_code == 200  # a hit
    # The per-user quota (30 a minute) of an unknown user: 404s, then a 429.
    codes = [client.get(f"/api/v1/users/{user_id}x/report").status_code for _ in range(40)]
    assert 429 in codes
    assert client.delete(f"/api/v1/users/{user_id}").status_code == 204

    wanted = {
        "answered in Italian": (
            "ray_happykube_requests_total",
            {
                "route": "/api/v1/emotion",
                "status": "200",
                "language": "it",
                "deployment": "Ingress",
            },
        ),
        "refused by the user limit": (
            "ray_happykube_requests_total",
            {
                "route": "/api/v1/users/{user_id}/report",
                "status": "429",
                "language": "none",
            },
        ),
        "cache hit": (
            "ray_happykube_cache_lookups_total",
            {
                "result": "hit",
                "deployment": "LanguageRouter",
            },
        ),
        "cache miss": ("ray_happykube_cache_lookups_total", {"result": "miss"}),
        "rate-limit rejection": ("ray_happykube_rate_limited_total", {"scope": "user"}),
        "db write": ("ray_happykube_db_write_seconds_count", {"deployment": "Ingress"}),
        "inference": ("ray_happykube_model_inference_seconds_count", {"model": "it_emotion"}),
    }
    # Ray exports on its own period (seconds): poll until everything shows, with a deadline.
    deadline = time.monotonic() + 120
    while True:
        samples = _samples()
        missing = [
            what for what, (name, labels) in wanted.items() if not _has(samples, name, **labels)
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    ours = sorted({s.name for s in samples if "happykube" in s.name})
    assert not missing, f"not exported: {missing}; happykube series seen: {ours}"
    # Raw paths never become a label: a user id in a path would be a series per user.
    assert not any(user_id in str(s.labels) for s in samples)
