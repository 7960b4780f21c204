"""The users API (report, export, settings, erasure) over a real PostgreSQL database."""

from __future__ import annotations

import csv
import io
import secrets
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from db import crud
from db.models import EmotionRecord, User
from db.sealed import Contents
from db.session import Database
from serve_app.auth import HEADER, KeyVerifier
from serve_app.errors import StorageUnavailableError
from serve_app.schemas import EmotionResult, ModelRef
from serve_app.users import EXPORT_COLUMNS, store_result
from tests.integration.app_env import (
    PEPPER,
    Callers,
    ServedGraph,
    client_for,
    new_key,
    real_app,
    shared_link,
)
from tests.integration.history_env import make_secrets


@pytest.fixture
def client(callers: tuple[httpx.AsyncClient, Callers]) -> httpx.AsyncClient:
    """The real app, acting as the caller "me" (its API key sent with every request)."""
    return callers[0]


@pytest.fixture
def me(callers: tuple[httpx.AsyncClient, Callers]) -> str:
    """The client of "me": the owner of what the tests store for it."""
    return callers[1].clients["me"]


def new_user_id() -> str:
    return str(10**9 + secrets.randbelow(10**9))


def result(emotion: str = "joy", sentiment: str = "positive") -> EmotionResult:
    return EmotionResult.model_validate(
        {
            "language": "it",
            "language_confidence": 0.97,
            "emotion": emotion,
            "emotion_scores": {emotion: 0.81, "neutral": 0.19},
            "sentiment": sentiment,
            "sentiment_scores": {sentiment: 0.7},
            "models": [
                ModelRef(name="it_emotion", revision="rev-e"),
                ModelRef(name="it_sentiment", revision="rev-s"),
            ],
        }
    )


async def add_at(
    database: Database, user_id: str, when: datetime, emotion: str, client: str = "local"
) -> None:
    """A record at a chosen time (the API always stores 'now')."""
    async with database.session() as session:
        hashed = database.user_hash(user_id, client=client)
        user = await crud.touch_user(session, client=client, user_hash=hashed)
        contents = Contents(
            text=f"{emotion} at {when.isoformat()}",
            emotion=emotion,
            emotion_score=0.9,
            sentiment="neutral",
            language="en",
            model="en_emotion",
            model_revision="r1",
        )
        await crud.add_record(
            session, key_ring=database.key_ring, user_id=user.id, contents=contents, created_at=when
        )


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}


async def test_store_answers_a_record_id_and_the_report_counts_it(
    database: Database, client: httpx.AsyncClient, me: str
) -> None:
    user_id = new_user_id()
    ids = [
        await store_result(
            database, client=me, user_id=user_id, text=f"msg {i}", result=result(emotion)
        )
        for i, emotion in enumerate(["joy", "joy", "sadness"])
    ]
    assert len(set(ids)) == 3

    response = await client.get(f"/api/v1/users/{user_id}/report", params={"days": 7})
    assert response.status_code == 200, response.text
    report = response.json()
    today = datetime.now(UTC).date()
    assert report["user_id"] == user_id
    assert report["days"] == 7
    assert report["total"] == 3
    assert report["emotion_counts"] == {"joy": 2, "sadness": 1}
    assert report["sentiment_counts"] == {"positive": 3}
    assert [day["date"] for day in report["daily"]] == [
        (today - timedelta(days=6 - i)).isoformat() for i in range(7)
    ]
    assert report["daily"][0] == {
        "date": (today - timedelta(days=6)).isoformat(),
        "total": 0,
        "emotions": {},
        "sentiment": {},
    }
    assert report["daily"][-1]["emotions"] == {"joy": 2, "sadness": 1}
    assert report["dominant_emotion"] == "joy"
    assert report["streak_days"] == 1


async def test_days_and_streak_follow_the_users_timezone(
    database: Database, client: httpx.AsyncClient, me: str
) -> None:
    """Local midnight in Rome is still yesterday in UTC: the entry counts for today in Rome."""
    user_id = new_user_id()
    rome = ZoneInfo("Europe/Rome")
    response = await client.patch(f"/api/v1/users/{user_id}", json={"timezone": "Europe/Rome"})
    assert response.status_code == 200, response.text
    today = datetime.now(rome).date()
    midnight = datetime.combine(today, time(), rome)
    await add_at(database, user_id, midnight, "joy", me)
    for back in (1, 2, 4):  # a gap three days ago ends the streak at three days
        await add_at(
            database, user_id, midnight - timedelta(days=back) + timedelta(hours=12), "fear", me
        )
    await add_at(
        database, user_id, midnight - timedelta(days=40), "anger", me
    )  # outside the window

    report = (await client.get(f"/api/v1/users/{user_id}/report?days=5")).json()
    assert [d["total"] for d in report["daily"]] == [1, 0, 1, 1, 1]
    assert report["daily"][-1] == {
        "date": today.isoformat(),
        "total": 1,
        "emotions": {"joy": 1},
        "sentiment": {"neutral": 1},
    }
    assert report["total"] == 4
    assert report["dominant_emotion"] == "fear"
    assert report["streak_days"] == 3

    await client.patch(f"/api/v1/users/{user_id}", json={"timezone": "UTC"})
    utc_report = (await client.get(f"/api/v1/users/{user_id}/report?days=5")).json()
    assert utc_report["daily"][-1]["date"] == datetime.now(UTC).date().isoformat()
    assert utc_report["daily"][-1]["emotions"].get("joy", 0) == (
        1 if midnight.astimezone(UTC).date() == datetime.now(UTC).date() else 0
    )


async def test_streak_survives_a_day_without_an_entry_yet(
    database: Database, client: httpx.AsyncClient, me: str
) -> None:
    user_id = new_user_id()
    noon = datetime.combine(datetime.now(UTC).date(), time(12), UTC)
    for back in (1, 2):
        await add_at(database, user_id, noon - timedelta(days=back), "joy", me)
    report = (await client.get(f"/api/v1/users/{user_id}/report?days=3")).json()
    assert report["streak_days"] == 2
    assert report["daily"][-1]["total"] == 0


async def test_export_gives_the_history_decrypted_as_json_and_csv(
    database: Database, client: httpx.AsyncClient, me: str
) -> None:
    user_id = new_user_id()
    texts = ['Oggi, finalmente, "sole"!', "riga uno\nriga due 😀"]
    for text in texts:
        await store_result(
            database, client=me, user_id=user_id, text=text, result=result("surprise")
        )

    response = await client.get(f"/api/v1/users/{user_id}/export")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    records = response.json()["records"]
    assert [r["text"] for r in records] == texts
    assert set(records[0]) == set(EXPORT_COLUMNS)
    assert records[0]["model"] == "it_emotion"
    assert records[0]["model_revision"] == "rev-e"
    assert records[0]["emotion_score"] == pytest.approx(0.81)

    response = await client.get(f"/api/v1/users/{user_id}/export", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [row["text"] for row in rows] == texts
    assert [row["id"] for row in rows] == [r["id"] for r in records]

    bad = await client.get(f"/api/v1/users/{user_id}/export", params={"format": "xml"})
    assert_error(bad, 422, "invalid_request")


async def test_a_caller_never_reaches_another_callers_user(
    database: Database, client: httpx.AsyncClient, callers: tuple[httpx.AsyncClient, Callers]
) -> None:
    """Someone else's user answers 404 exactly like a user that does not exist."""
    user_id = new_user_id()
    _, named = callers
    alice_id = await named.add("alice")
    await named.add("bob")
    await store_result(database, client=alice_id, user_id=user_id, text="mio", result=result())
    bob = named.headers("bob")
    for method, path in [
        ("GET", f"/api/v1/users/{user_id}/report"),
        ("GET", f"/api/v1/users/{user_id}/export"),
        ("DELETE", f"/api/v1/users/{user_id}"),
        ("GET", f"/api/v1/users/{new_user_id()}/report"),
    ]:
        response = await client.request(method, path, headers=bob)
        assert_error(response, 404, "user_not_found")

    # Bob's own user with the same external id is a different user with no history.
    await client.patch(f"/api/v1/users/{user_id}", json={"language": "en"}, headers=bob)
    assert (await client.get(f"/api/v1/users/{user_id}/report", headers=bob)).json()["total"] == 0
    alice = await client.get(f"/api/v1/users/{user_id}/export", headers=named.headers("alice"))
    assert [r["text"] for r in alice.json()["records"]] == ["mio"]


async def test_delete_erases_the_user_and_every_record(
    database: Database, client: httpx.AsyncClient, me: str
) -> None:
    user_id = new_user_id()
    for i in range(3):
        await store_result(database, client=me, user_id=user_id, text=f"t{i}", result=result())
    async with database.session() as session:
        hashed = database.user_hash(user_id, client=me)
        user = await crud.find_user(session, client=me, user_hash=hashed)
        assert user is not None
        internal_id = user.id

    response = await client.delete(f"/api/v1/users/{user_id}")
    assert response.status_code == 204
    async with database.session() as session:
        left = await session.scalar(
            select(func.count()).where(EmotionRecord.user_id == internal_id)
        )
        assert left == 0
        assert await session.get(User, internal_id) is None
    assert_error(await client.delete(f"/api/v1/users/{user_id}"), 404, "user_not_found")
    assert_error(await client.get(f"/api/v1/users/{user_id}/report"), 404, "user_not_found")


async def test_patch_sets_language_and_timezone_and_validates_them(
    client: httpx.AsyncClient,
) -> None:
    user_id = new_user_id()
    response = await client.patch(f"/api/v1/users/{user_id}", json={"language": "it"})
    assert response.status_code == 200
    assert response.json()["language"] == "it"
    assert response.json()["timezone"] == "UTC"
    response = await client.patch(f"/api/v1/users/{user_id}", json={"timezone": "Europe/Rome"})
    assert response.json() | {"created_at": None, "last_seen_at": None} == {
        "user_id": user_id,
        "language": "it",
        "timezone": "Europe/Rome",
        "created_at": None,
        "last_seen_at": None,
    }
    bad: list[dict[str, Any]] = [
        {"timezone": "Mars/Olympus"},
        {"timezone": "../../etc/passwd"},
        {"language": "fr"},
        {"colour": "blue"},
    ]
    for body in bad:
        response = await client.patch(f"/api/v1/users/{user_id}", json=body)
        assert_error(response, 422, "invalid_request")
    assert_error(
        await client.get(f"/api/v1/users/{user_id}/report", params={"days": 0}),
        422,
        "invalid_request",
    )
    assert_error(await client.get(f"/api/v1/users/{'9' * 65}/report"), 422, "invalid_request")


async def test_an_unreachable_database_answers_503(
    database: Database, served_graph: ServedGraph
) -> None:
    """A key verified while the database answered; then the history's database is gone."""
    key, _ = await new_key(database, "history:read")
    verifier = KeyVerifier(PEPPER, cache_s=60)
    dead = Database("postgresql://postgres@127.0.0.1:1/none", make_secrets())
    try:
        async with shared_link() as link:
            async with client_for(real_app(served_graph, database, link, keys=verifier)) as http:
                assert (
                    await http.get("/api/v1/users/1/report", headers={HEADER: key})
                ).status_code == 404
            async with client_for(real_app(served_graph, dead, link, keys=verifier)) as http:
                response = await http.get(
                    f"/api/v1/users/{new_user_id()}/report", headers={HEADER: key}
                )
        assert_error(response, 503, "storage_unavailable")
        with pytest.raises(StorageUnavailableError):
            await store_result(dead, client="k", user_id="1", text="x", result=result())
    finally:
        await dead.dispose()


async def test_record_ids_are_uuids_and_text_is_not_stored_in_clear(
    database: Database, me: str
) -> None:
    user_id = new_user_id()
    record_id = await store_result(
        database, client=me, user_id=user_id, text="chiaro", result=result()
    )
    assert isinstance(record_id, uuid.UUID)
    async with database.session() as session:
        record = await session.get(EmotionRecord, record_id)
        assert record is not None
        assert b"chiaro" not in record.sealed
        assert record.key_id == "k1"
        contents = crud.open_record(database.key_ring, record)
        assert contents.meta["models"][1] == {"name": "it_sentiment", "revision": "rev-s"}
        assert contents.text == "chiaro"
