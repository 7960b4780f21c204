"""One request id per request: the response header, the error body, the stored record and
the log lines of every replica the request reached (ingress, router, model)."""

import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from db.sealed import unseal
from serve_app.middleware import acceptable_request_id
from tests.integration.history_env import make_secrets

HEADER = "X-Request-ID"


@pytest.fixture(scope="module")
def client(serve_url: str, api_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve_url, headers=api_headers, timeout=30) as http:
        yield http


def _only_id(response: httpx.Response) -> str:
    (rid,) = response.headers.get_list(HEADER)  # one header: nobody appends a second id
    assert rid
    return rid


def _stored_request_id(pg_url: str, record_id: str) -> object:
    """The request id sealed in the record (its `meta`), opened with the served app's key."""
    with psycopg.connect(pg_url) as conn:
        query = "SELECT sealed, key_id, user_id FROM emotion_records WHERE id = %s"
        row = conn.execute(query, (record_id,)).fetchone()
    assert row is not None
    sealed, key_id, user_id = row
    contents = unseal(
        make_secrets().key_ring,
        bytes(sealed),
        key_id=key_id,
        user_id=user_id,
        record_id=uuid.UUID(record_id),
    )
    return contents.meta.get("request_id")


def _logs_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path())


def _log_lines_with(needle: str) -> list[str]:
    return [
        line
        for path in _logs_dir().rglob("*")
        if path.is_file()
        for line in path.read_text(errors="replace").splitlines()
        if needle in line
    ]


def _line_of(lines: list[str], event: str, deployment: str) -> bool:
    """A line of `event` written in `deployment`, console (`k=v`) or JSON rendering."""
    tags = (f"deployment={deployment}", f'"deployment": "{deployment}"')
    return any(event in line and any(tag in line for tag in tags) for line in lines)


def _assert_logged(needle: str, *wanted: tuple[str, str], timeout_s: float = 30.0) -> None:
    """Each (event, deployment) pair has a log line naming `needle` (log files lag a little)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = _log_lines_with(needle)
        missing = [(event, dep) for event, dep in wanted if not _line_of(lines, event, dep)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, f"no log line for {missing} with {needle}: {lines}"


def test_a_stored_analysis_carries_serves_id_to_the_record_and_every_replica_log(
    client: httpx.Client, pg_url: str
) -> None:
    """The id Serve gave the request is the response header, the record's metadata
    `request_id`, and in the log lines of the ingress, the router and the Italian model."""
    user_id = str(8_000_000_000 + secrets.randbelow(999_999_999))
    # A text no other test sent, so the prediction cache cannot spare the model call.
    text = f"Oggi sono davvero felice, che bella giornata {secrets.token_hex(4)}"
    r = client.post("/api/v1/emotion", json={"text": text, "user_id": user_id})
    assert r.status_code == 200, r.text
    rid = _only_id(r)
    assert _stored_request_id(pg_url, r.json()["record_id"]) == rid
    _assert_logged(
        rid,
        ("request_answered", "Ingress"),
        ("texts_routed", "LanguageRouter"),
        ("batch_classified", "it_emotion"),
        ("batch_classified", "it_sentiment"),
        ("record_stored", "Ingress"),
    )
    # Serve's own per-replica log files name it too: one id across the processes.
    files = {p.name for p in _logs_dir().rglob("replica_*.log") if rid in p.read_text()}
    for deployment in ("Ingress", "LanguageRouter", "it_emotion", "it_sentiment"):
        assert any(f"_{deployment}_" in name for name in files), (deployment, files)
    assert client.delete(f"/api/v1/users/{user_id}").status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/v1/emotion", {"text": "   "}, 422),
        ("POST", "/api/v1/emotion", {"text": "x" * 300_000}, 413),
        ("GET", "/api/v1/nothing", None, 404),
    ],
)
def test_an_error_names_the_id_of_its_header(
    client: httpx.Client, method: str, path: str, body: object, status: int
) -> None:
    """Errors refused in the app, before routing and by the body limit all answer the header's
    id in the body."""
    r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["request_id"] == _only_id(r)


@pytest.mark.parametrize("given", ["trace-" + secrets.token_hex(8), "bot 42/some:thing"])
def test_a_callers_id_is_echoed_in_header_body_and_record(
    client: httpx.Client, pg_url: str, given: str
) -> None:
    """A caller's X-Request-ID, plain or with odd characters, is the request's one id."""
    refused = client.post("/api/v1/emotion", json={"text": ""}, headers={HEADER: given})
    assert _only_id(refused) == given
    assert refused.json()["request_id"] == given
    user_id = str(8_000_000_000 + secrets.randbelow(999_999_999))
    stored = client.post(
        "/api/v1/emotion", json={"text": "I am happy", "user_id": user_id}, headers={HEADER: given}
    )
    assert stored.status_code == 200, stored.text
    assert _only_id(stored) == given
    assert _stored_request_id(pg_url, stored.json()["record_id"]) == given
    assert client.delete(f"/api/v1/users/{user_id}").status_code == 204


def test_gathered_requests_each_keep_their_own_id_to_the_model(
    serve_url: str, api_headers: dict[str, str]
) -> None:
    """Concurrent requests, which the ingress may send to the router in one call, each still
    reach the router's and the model's log lines under their own id."""
    ids = [f"gather-{secrets.token_hex(6)}" for _ in range(8)]

    def send(rid: str) -> httpx.Response:
        text = f"What a lovely surprise, thank you so much {secrets.token_hex(4)}"
        headers = {**api_headers, HEADER: rid}
        return httpx.post(f"{serve_url}/api/v1/emotion", json={"text": text}, headers=headers)

    with ThreadPoolExecutor(len(ids)) as pool:
        answers = list(pool.map(send, ids))
    assert [(r.status_code, _only_id(r)) for r in answers] == [(200, rid) for rid in ids]
    for rid in ids:
        _assert_logged(rid, ("texts_routed", "LanguageRouter"), ("batch_classified", "en_emotion"))


@pytest.mark.parametrize(
    "given", [b"\xc3\xa9t\xc3\xa9-" + secrets.token_hex(6).encode(), b"long-" + b"a" * 130]
)
def test_an_unacceptable_callers_id_is_replaced_at_the_proxy(
    client: httpx.Client, pg_url: str, given: bytes
) -> None:
    """Serve's proxy swaps a caller's id that is not 1-128 printable ASCII characters for a
    fresh one: the header, the body, the stored record and the logs never see the bad one."""
    user_id = str(8_000_000_000 + secrets.randbelow(999_999_999))
    r = client.post(
        "/api/v1/emotion", json={"text": "I am happy", "user_id": user_id}, headers={HEADER: given}
    )
    assert r.status_code == 200, r.text
    rid = _only_id(r)
    assert rid.encode() != given and acceptable_request_id(rid)
    assert _stored_request_id(pg_url, r.json()["record_id"]) == rid
    refused = client.post("/api/v1/emotion", json={"text": ""}, headers={HEADER: given})
    assert refused.json()["request_id"] == _only_id(refused) != given.decode("latin-1")
    _assert_logged(rid, ("request_answered", "Ingress"))
    assert not _log_lines_with(given.decode("latin-1")[:20])
    assert client.delete(f"/api/v1/users/{user_id}").status_code == 204
