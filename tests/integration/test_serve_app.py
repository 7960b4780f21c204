"""The whole application under real Ray Serve, called over HTTP like any client would."""

import json

import httpx
import pytest

IT_EMOTIONS = {"anger", "fear", "joy", "sadness"}
EN_EMOTIONS = {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}


@pytest.fixture(scope="module")
def client(serve_url: str, api_headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=serve_url, headers=api_headers, timeout=30)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["request_id"]
    return dict(body["error"])


def test_italian_reaches_both_italian_models(client: httpx.Client) -> None:
    r = client.post("/api/v1/emotion", json={"text": "Oggi sono felicissima, che bella giornata!"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == "it"
    assert body["language_confidence"] > 0.5
    assert [m["name"] for m in body["models"]] == ["it_emotion", "it_sentiment"]
    assert set(body["emotion_scores"]) == IT_EMOTIONS
    assert body["emotion"] == max(body["emotion_scores"], key=body["emotion_scores"].get)
    assert set(body["sentiment_scores"]) == {"negative", "positive"}
    assert sum(body["emotion_scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["stored"] is False


def test_english_reaches_the_english_model_with_derived_sentiment(client: httpx.Client) -> None:
    r = client.post("/api/v1/emotion", json={"text": "Today I feel really happy and grateful"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == "en"
    assert [m["name"] for m in body["models"]] == ["en_emotion"]
    assert set(body["emotion_scores"]) == EN_EMOTIONS
    assert set(body["sentiment_scores"]) == {"negative", "neutral", "positive"}
    assert body["models"][0]["revision"] == "random-tiny-seed2"


def test_language_hint_routes_text_detection_cannot_place(client: httpx.Client) -> None:
    r = client.post("/api/v1/emotion", json={"text": "\U0001f622\U0001f622", "language": "en"})
    assert r.status_code == 200, r.text
    assert r.json()["language"] == "en"


GATHERED = [
    ("Oggi sono felicissima, che bella giornata!", None, "it"),
    ("Sono molto preoccupato per il lavoro", None, "it"),
    ("Today I feel really happy and grateful", None, "en"),
    ("I am so angry about the delay", None, "en"),
    ("\U0001f622\U0001f622", "en", "en"),
    ("\U0001f622\U0001f622\U0001f622", "it", "it"),
    ("Estoy muy contento con mi nueva casa y mis amigos", None, None),  # refused: Spanish
    ("Che paura questa notte, non riesco a dormire", None, "it"),
]


async def test_concurrent_requests_are_gathered_and_each_gets_its_own_answer(
    serve_url: str, api_headers: dict[str, str]
) -> None:
    """Single-message requests in flight together share router calls, answers stay apart."""
    import asyncio

    from ray import serve

    router = serve.get_deployment_handle("LanguageRouter", app_name="happykube")
    before = (await router.call_stats.remote())["calls_total"]

    def payload(text: str, hint: str | None) -> dict[str, str]:
        return {"text": text, **({"language": hint} if hint else {})}

    async with httpx.AsyncClient(base_url=serve_url, headers=api_headers, timeout=30) as http:
        together = await asyncio.gather(
            *(http.post("/api/v1/emotion", json=payload(t, h)) for t, h, _ in GATHERED)
        )
        stats = await router.call_stats.remote()
        new = stats["calls_total"] - before
        # The recent window holds 256 calls; earlier tests may have filled it.
        calls = stats["recent_calls"][-new:] if new else []
        alone = [await http.post("/api/v1/emotion", json=payload(t, h)) for t, h, _ in GATHERED]
    for (_, _, language), got, want in zip(GATHERED, together, alone, strict=True):
        if language is None:
            assert got.status_code == want.status_code == 422, got.text
            assert got.json()["error"]["code"] == "unsupported_language"
            continue
        assert got.status_code == 200, got.text
        assert got.json()["language"] == language
        assert got.json()["emotion_scores"] == want.json()["emotion_scores"]
    assert sum(calls) == len(GATHERED)
    assert max(calls) > 1, f"no request was gathered with another: {calls}"


def test_batch_answers_in_order_with_per_item_errors(client: httpx.Client) -> None:
    texts = [
        "Che rabbia, il treno è in ritardo di nuovo!",
        "   ",
        "I'm scared of the storm outside tonight",
        "Hoy estoy muy feliz con mis amigos",
        "x" * 2001,
    ]
    r = client.post("/api/v1/emotion/batch", json={"texts": texts})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 5
    assert results[0]["result"]["language"] == "it" and results[0]["error"] is None
    assert results[1]["error"]["code"] == "empty_text" and results[1]["result"] is None
    assert results[2]["result"]["language"] == "en"
    assert results[3]["error"]["code"] == "unsupported_language"
    assert results[3]["error"]["details"]["detected"] == "es"
    assert results[4]["error"]["code"] == "text_too_long"


def test_batch_limit(client: httpx.Client) -> None:
    r = client.post("/api/v1/emotion/batch", json={"texts": ["ciao"] * 65})
    assert _error(r, 422, "too_many_texts")["details"] == {"limit": 64}
    _error(client.post("/api/v1/emotion/batch", json={"texts": []}), 422, "invalid_request")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"text": ""}, "empty_text"),
        ({"text": " \n\t "}, "empty_text"),
        ({"text": "\u0000\u0007\u200b"}, "empty_text"),
        ({"text": "a" * 2001}, "text_too_long"),
        ({"text": "Hoy estoy muy feliz con mis amigos"}, "unsupported_language"),
        ({"text": "Je suis très content aujourd'hui"}, "unsupported_language"),
        ({"text": 42}, "invalid_request"),
        ({"text": None}, "invalid_request"),
        ({}, "invalid_request"),
        ({"text": "ciao", "surprise": 1}, "invalid_request"),
        ({"text": "ciao", "language": "es"}, "invalid_request"),
        (["ciao"], "invalid_request"),
    ],
)
def test_bad_input_gets_a_stable_4xx(client: httpx.Client, payload: object, code: str) -> None:
    _error(client.post("/api/v1/emotion", json=payload), 422, code)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"text": "ciao \xff\xfe"}', b"", b'{"text": "ciao"'],
)
def test_malformed_bodies(client: httpx.Client, raw: bytes) -> None:
    r = client.post("/api/v1/emotion", content=raw, headers={"content-type": "application/json"})
    _error(r, 422, "invalid_request")


def test_body_size_limit_declared_and_streamed(client: httpx.Client) -> None:
    big = json.dumps({"text": "a" * 300_000}).encode()
    _error(client.post("/api/v1/emotion", content=big), 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit must still hold
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    r = client.post(
        "/api/v1/emotion", content=chunks(), headers={"content-type": "application/json"}
    )
    _error(r, 413, "payload_too_large")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    _error(client.get("/api/v1/nothing"), 404, "not_found")
    _error(client.get("/api/v1/emotion"), 405, "method_not_allowed")


def test_request_id_is_returned_and_honoured(client: httpx.Client) -> None:
    r = client.post("/api/v1/emotion", json={"text": ""}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    assert r.json()["request_id"] == "abc-123"
    assert client.get("/healthz").headers["X-Request-ID"]


def test_health_readiness_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"en_emotion": True, "it_emotion": True, "it_sentiment": True}
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/emotion", "/api/v1/emotion/batch", "/healthz", "/readyz"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_history_round_trip_through_the_service(client: httpx.Client) -> None:
    """A message with a user_id is stored encrypted, reported, exported and erased."""
    user = "4242424242"
    texts = ["Oggi sono felicissima, che bella giornata!", "I'm scared of the storm outside"]
    ids = []
    for text in texts:
        r = client.post("/api/v1/emotion", json={"text": text, "user_id": user})
        assert r.status_code == 200, r.text
        assert r.json()["stored"] is True
        ids.append(r.json()["record_id"])
    assert client.post("/api/v1/emotion", json={"text": "ciao a tutti"}).json()["stored"] is False

    report = client.get(f"/api/v1/users/{user}/report", params={"days": 7}).json()
    assert report["total"] == 2
    assert report["streak_days"] == 1
    assert sum(report["emotion_counts"].values()) == 2

    export = client.get(f"/api/v1/users/{user}/export", params={"format": "json"}).json()
    assert sorted(r["id"] for r in export["records"]) == sorted(ids)
    assert sorted(r["text"] for r in export["records"]) == sorted(texts)

    assert client.delete(f"/api/v1/users/{user}").status_code == 204
    _error(client.get(f"/api/v1/users/{user}/export"), 404, "user_not_found")


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("\U0001f622\U0001f62d\U0001f494", 200, None),  # emoji only: the fallback language
        ("Oggi sono felice \u0000\u0000 davvero", 200, None),  # null bytes are dropped
        ("\u0000" * 50, 422, "empty_text"),
        ("Sono contento, thank you so much my friend, grazie mille!", 200, None),  # mixed
        ("Sono felice Привет 你好 مرحبا", 200, None),  # four scripts in one message
        (("perché è così bello, " * 100)[:2000], 200, None),  # at the limit, multi-byte
        ("\U0001f600" * 2001, 422, "text_too_long"),  # counted in characters, not bytes
        ("\u0301" * 1500 + "ciao", 200, None),  # a pile of combining marks
    ],
    ids=["emoji", "nulls", "only-nulls", "mixed", "scripts", "long", "too-long", "marks"],
)
def test_unusual_unicode_inputs(
    client: httpx.Client, text: str, status: int, code: str | None
) -> None:
    r = client.post("/api/v1/emotion", json={"text": text})
    if code is None:
        assert r.status_code == status, r.text
        assert r.json()["emotion"]
    else:
        _error(r, status, code)
