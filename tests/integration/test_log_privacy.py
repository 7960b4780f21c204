"""No message text and no raw user id reaches any log line of the running service."""

import secrets
import time
from pathlib import Path

import httpx


def _logs_dir() -> Path:
    import ray

    node = ray._private.worker._global_node
    return Path(node.get_logs_dir_path())


def test_a_full_request_leaves_no_text_or_id_in_the_logs(
    serve_url: str, api_headers: dict[str, str]
) -> None:
    marker = "zebra" + secrets.token_hex(6)
    user_id = str(7_000_000_000 + secrets.randbelow(999_999_999))
    with httpx.Client(base_url=serve_url, headers=api_headers, timeout=30) as client:
        stored = client.post(
            "/api/v1/emotion", json={"text": f"Oggi sono felice {marker}", "user_id": user_id}
        )
        assert stored.status_code == 200, stored.text
        assert stored.json()["stored"] is True
        bad = client.post("/api/v1/emotion", json={"text": f"{marker}" * 1000, "user_id": user_id})
        assert bad.status_code == 422
        assert client.get(f"/api/v1/users/{user_id}/report").status_code == 200
        export = client.get(f"/api/v1/users/{user_id}/export", params={"format": "csv"})
        assert marker in export.text  # the service does have the text, decrypted on demand
        assert client.delete(f"/api/v1/users/{user_id}").status_code == 204
    time.sleep(2)  # let the replicas' log handlers reach the files

    logs = [p for p in _logs_dir().rglob("*") if p.is_file()]
    # The scan reads the right files: the storing request's id is logged there.
    request_id = stored.headers["X-Request-ID"].encode()
    assert any(request_id in p.read_bytes() for p in logs)
    leaks = [
        str(path)
        for path in logs
        if (data := path.read_bytes()) and (marker.encode() in data or user_id.encode() in data)
    ]
    assert leaks == [], f"message text or raw user id found in {leaks}"
