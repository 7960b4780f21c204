"""Input rules of the real app (issue 16): text that cannot be stored, user ids the users API
cannot address and unacceptable request ids are answered 4xx or replaced before any model runs,
and nothing is stored that the API can no longer reach or erase."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
import pytest

from db.session import Database
from serve_app.auth import HEADER
from serve_app.gather import RouterClient
from serve_app.keys import EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE
from tests.integration.app_env import Callers, new_key

LONE_SURROGATE = "ciao \ud800 come stai"


class RouterSpy:
    """Counts the texts the app hands the (real) router, then lets the call through."""

    def __init__(self, router: RouterClient) -> None:
        self._one, self._many, self.texts = router.one, router.many, 0

    async def one(self, text: str, *args: Any) -> Any:
        self.texts += 1
        return await self._one(text, *args)

    async def many(self, texts: list[str], *args: Any) -> Any:
        self.texts += len(texts)
        return await self._many(texts, *args)


@pytest.fixture
async def client(
    callers: tuple[httpx.AsyncClient, Callers], database: Database
) -> httpx.AsyncClient:
    """The real app, with a key that may analyse and store and read its users' histories."""
    http = callers[0]
    key, _ = await new_key(database, EMOTION_WRITE, HISTORY_READ, HISTORY_WRITE)
    http.headers[HEADER] = key
    return http


@pytest.fixture
def spy(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> RouterSpy:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    router: RouterClient = transport.app.state.services.router  # type: ignore[attr-defined]
    watch = RouterSpy(router)
    monkeypatch.setattr(router, "one", watch.one)
    monkeypatch.setattr(router, "many", watch.many)
    return watch


async def post_json(client: httpx.AsyncClient, path: str, body: object) -> httpx.Response:
    """POST `body` as ASCII JSON: a lone surrogate travels as its `\\ud800` escape, as any
    JSON encoder that is not strict about Unicode sends it (httpx's own refuses)."""
    content = json.dumps(body, ensure_ascii=True)
    return await client.post(path, content=content, headers={"content-type": "application/json"})


def new_user_id() -> str:
    return str(10**9 + secrets.randbelow(10**9))


async def test_a_lone_surrogate_is_refused_before_the_model_and_nothing_is_stored(
    client: httpx.AsyncClient, spy: RouterSpy
) -> None:
    """Before: 500 internal_error after the model ran (the text's encryption failed)."""
    user = new_user_id()
    r = await post_json(client, "/api/v1/emotion", {"text": LONE_SURROGATE, "user_id": user})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_text"
    assert error["details"] == {"position": LONE_SURROGATE.index("\ud800")}
    assert spy.texts == 0
    assert (await client.get(f"/api/v1/users/{user}/report")).status_code == 404


async def test_a_batch_refuses_only_its_unencodable_items(
    client: httpx.AsyncClient, spy: RouterSpy
) -> None:
    texts = ["I am so happy today", "sono triste \udfff", "what a day"]
    r = await post_json(client, "/api/v1/emotion/batch", {"texts": texts})
    assert r.status_code == 200, r.text
    items = r.json()["results"]
    assert [item["error"]["code"] if item["error"] else "ok" for item in items] == [
        "ok",
        "invalid_text",
        "ok",
    ]
    assert spy.texts == 2


@pytest.mark.parametrize(
    "user_id", ["", "a/b", "x" * 65, "mario rossi", "ñandú", "a\nb", ".", ".."]
)
async def test_a_user_id_the_users_api_cannot_address_is_refused(
    client: httpx.AsyncClient, spy: RouterSpy, user_id: str
) -> None:
    """Before: "" and "a/b" answered 200 and were stored, then unreachable for ever; "." and
    ".." fit the characters but a path segment of them is collapsed by every HTTP client."""
    r = await post_json(client, "/api/v1/emotion", {"text": "I am happy", "user_id": user_id})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert spy.texts == 0


@pytest.mark.parametrize("shape", ["tg:{}_a.B-9", "...{}", ".{}", "..{}."])
async def test_every_acceptable_user_id_stays_reachable_and_erasable(
    client: httpx.AsyncClient, shape: str
) -> None:
    user = shape.format(new_user_id())
    stored = await client.post("/api/v1/emotion", json={"text": "I am happy", "user_id": user})
    assert stored.status_code == 200, stored.text
    export = await client.get(f"/api/v1/users/{user}/export")
    assert export.status_code == 200
    assert [rec["id"] for rec in export.json()["records"]] == [stored.json()["record_id"]]
    assert (await client.delete(f"/api/v1/users/{user}")).status_code == 204
    assert (await client.get(f"/api/v1/users/{user}/report")).status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/users/a%20b/report", "/api/v1/users/%C3%B1/export"])
async def test_a_path_user_id_out_of_the_pattern_is_422(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "given",
    [b"\xc3\xa9t\xc3\xa9", b"a" * 129, b"x\ty", b"\x7f", b" padded"],
    ids=["utf8", "129-chars", "tab", "del", "leading-space"],
)
async def test_an_unacceptable_request_id_is_replaced(
    client: httpx.AsyncClient, given: bytes
) -> None:
    r = await client.post("/api/v1/emotion", json={"text": ""}, headers={"X-Request-ID": given})
    rid = r.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    assert r.json()["request_id"] == rid


@pytest.mark.parametrize("given", ["a" * 128, "bot 42/some:thing", "~!"])
async def test_an_acceptable_request_id_is_kept(client: httpx.AsyncClient, given: str) -> None:
    r = await client.post("/api/v1/emotion", json={"text": ""}, headers={"X-Request-ID": given})
    assert r.headers["X-Request-ID"] == given
    assert r.json()["request_id"] == given


async def test_an_unexpected_error_answers_a_generic_500_named_by_its_request_id(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever an unexpected exception says (a host, a path, a secret) stays in the
    process; the caller gets a generic message and the request id, in body and header."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    router: RouterClient = transport.app.state.services.router  # type: ignore[attr-defined]

    async def broken(*_: object) -> object:
        raise RuntimeError("postgresql://app:hunter2@db.internal:5432 /srv/secret-path")

    monkeypatch.setattr(router, "one", broken)
    # As a server answers: the 500 reaches the caller instead of re-raising in the test.
    answering = httpx.ASGITransport(app=transport.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=answering, base_url="http://test", headers=client.headers
    ) as http:
        r = await http.post("/api/v1/emotion", json={"text": "I am happy"})
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == {
        "code": "internal_error",
        "message": "internal error; quote the request id",
        "details": None,
    }
    assert "hunter2" not in r.text and "secret-path" not in r.text
    assert r.headers.get("X-Request-ID") == body["request_id"]
