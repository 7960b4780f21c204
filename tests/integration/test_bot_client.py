"""The bot's HTTP client of the ingress, against a real HTTP server answering from a script:
headers sent, error mapping, and which calls are retried (only those safe to repeat)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from bot.client import (
    IngressClient,
    IngressRateLimitedError,
    IngressRejectedError,
    IngressUnavailableError,
    IngressUserNotFoundError,
)
from tests.conftest import free_port
from tests.fake_ingress import Scripted, ScriptedIngressServer

KEY = "bot-test-key-0123456789"
RESULT = {
    "language": "it",
    "language_confidence": 0.97,
    "emotion": "joy",
    "emotion_scores": {"joy": 0.9, "sadness": 0.1},
    "sentiment": "positive",
    "sentiment_scores": {"positive": 0.8},
    "models": [{"name": "it_emotion", "revision": "abc"}],
    "stored": True,
    "record_id": "7d3e",
}


def error(code: str, request_id: str = "srv-req-1") -> dict[str, object]:
    return {"error": {"code": code, "message": code, "details": None}, "request_id": request_id}


def client(url: str, *, timeout_s: float = 2.0, attempts: int = 3) -> IngressClient:
    return IngressClient(url, KEY, timeout_s=timeout_s, attempts=attempts, backoff_s=0.01)


async def test_analyse_sends_the_key_a_request_id_and_the_body() -> None:
    """POST /api/v1/emotion carries X-API-Key, an X-Request-ID, the text, id and language."""
    async with ScriptedIngressServer(Scripted(body=RESULT)) as server:
        ingress = client(server.url)
        result = await ingress.analyse("Che bella giornata", user_id="42", language="it")
        await ingress.aclose()
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/api/v1/emotion")
    assert request.headers["X-API-Key"] == KEY
    assert len(request.headers["X-Request-ID"]) == 32
    assert server.bodies[0] == b'{"text":"Che bella giornata","user_id":"42","language":"it"}'
    assert (result.emotion, result.record_id) == ("joy", "7d3e")


async def test_a_slow_ingress_times_out_and_a_post_is_not_repeated() -> None:
    """A POST that reached the server is never retried (it may have been stored)."""
    async with ScriptedIngressServer(Scripted(body=RESULT, delay_s=1.0)) as server:
        ingress = client(server.url, timeout_s=0.3)
        with pytest.raises(IngressUnavailableError) as caught:
            await ingress.analyse("ciao", user_id="42", language=None)
        await ingress.aclose()
    assert caught.value.code == "timeout"
    assert len(server.requests) == 1


async def test_idempotent_calls_retry_5xx_and_honour_retry_after() -> None:
    """GET retries 503 with backoff and then succeeds; Retry-After sets the wait."""
    report = {
        "user_id": "42",
        "days": 7,
        "total": 0,
        "emotion_counts": {},
        "sentiment_counts": {},
        "daily": [],
        "dominant_emotion": None,
        "streak_days": 0,
    }
    answers = (
        Scripted(503, error("storage_unavailable")),
        Scripted(429, error("rate_limited"), headers={"Retry-After": "0.3"}),
        Scripted(body=report),
    )
    async with ScriptedIngressServer(*answers) as server:
        ingress = client(server.url)
        started = time.monotonic()
        got = await ingress.report("42", 7)
        elapsed = time.monotonic() - started
        await ingress.aclose()
    assert got.days == 7
    assert [r.path_qs for r in server.requests] == ["/api/v1/users/42/report?days=7"] * 3
    assert elapsed >= 0.3
    # The same request id on every attempt, so the ingress logs show one logical call.
    assert len({r.headers["X-Request-ID"] for r in server.requests}) == 1


async def test_errors_map_to_named_exceptions_with_the_ingress_request_id() -> None:
    """4xx codes become IngressRejectedError, 404 user_not_found its own error, a lasting 429
    IngressRateLimitedError and a lasting 503 IngressUnavailableError."""
    async with ScriptedIngressServer(Scripted(422, error("text_too_long", "r-422"))) as server:
        ingress = client(server.url)
        with pytest.raises(IngressRejectedError) as rejected:
            await ingress.analyse("x" * 5000, user_id="42", language="en")
        await ingress.aclose()
    assert (rejected.value.code, rejected.value.request_id) == ("text_too_long", "r-422")

    async with ScriptedIngressServer(Scripted(404, error("user_not_found"))) as server:
        ingress = client(server.url)
        with pytest.raises(IngressUserNotFoundError):
            await ingress.export_csv("42")
        assert await ingress.forget("42") is False
        await ingress.aclose()
    assert len(server.requests) == 2, "a 404 is an answer, not retried"

    async with ScriptedIngressServer(Scripted(429, error("rate_limited"))) as server:
        ingress = client(server.url, attempts=2)
        with pytest.raises(IngressRateLimitedError):
            await ingress.update_settings("42", timezone="Europe/Rome")
        with pytest.raises(IngressRateLimitedError):
            await ingress.analyse("ciao", user_id="42", language=None)
        await ingress.aclose()
    assert len(server.requests) == 3, "PATCH tried twice, POST once"

    async with ScriptedIngressServer(Scripted(503, "<html>bad gateway</html>")) as server:
        ingress = client(server.url, attempts=2)
        with pytest.raises(IngressUnavailableError) as unavailable:
            await ingress.forget("42")
        await ingress.aclose()
    assert unavailable.value.code == "http_503"


async def test_export_and_delete_and_settings_use_the_contract_routes() -> None:
    """CSV export asks format=csv and returns the text; DELETE 204 means erased; PATCH sends
    only the fields given."""
    csv_text = "id,created_at,text\n1,2025-01-01T00:00:00Z,ciao\n"
    answers = (Scripted(body=csv_text), Scripted(204), Scripted(body={"user_id": "42"}))
    async with ScriptedIngressServer(*answers) as server:
        ingress = client(server.url)
        assert await ingress.export_csv("42") == csv_text
        assert await ingress.forget("42") is True
        await ingress.update_settings("42", language="en")
        await ingress.aclose()
    assert [(r.method, r.path_qs) for r in server.requests] == [
        ("GET", "/api/v1/users/42/export?format=csv"),
        ("DELETE", "/api/v1/users/42"),
        ("PATCH", "/api/v1/users/42"),
    ]
    assert server.bodies[2] == b'{"language":"en"}'


async def test_connect_errors_are_retried_then_reported_unreachable() -> None:
    """Nothing listening: every attempt fails to connect (safe to retry even a POST)."""
    ingress = client(f"http://127.0.0.1:{free_port()}", attempts=3)
    started = datetime.now(UTC)
    with pytest.raises(IngressUnavailableError) as caught:
        await ingress.analyse("ciao", user_id="42", language="it")
    await ingress.aclose()
    assert caught.value.code == "unreachable"
    assert (datetime.now(UTC) - started).total_seconds() < 2
