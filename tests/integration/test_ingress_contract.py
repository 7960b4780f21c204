"""One contract, two ingresses: every test here runs against `FakeIngress` (which the bot's
tests use) and against the served application through the bot's real HTTP client.

What the bot relies on is asserted on both: what an analysis answers, what a report counts
(days in the user's timezone, the streak), the CSV export, erasure, and the errors (401,
404, 422 with a stable code). A fake that drifts from the service fails here, not in
production. The model's answer itself is not compared: the served app runs random tiny
checkpoints, so the assertions are the relations every answer must satisfy.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.client import (
    Ingress,
    IngressClient,
    IngressRejectedError,
    IngressUserNotFoundError,
)
from contract import EXPORT_COLUMNS, EmotionResult, ExportRecord, Language, Sentiment
from serve_app import registry
from tests.conftest import TEST_API_KEY
from tests.fake_ingress import FakeIngress

ITALIAN = "Oggi sono proprio felice, che bella giornata!"
# One English text per emotion (the fake's keywords), each plainly English for detection.
ENGLISH = [
    "I am so happy today, what a lovely day",
    "I feel sad and lonely tonight",
    "I'm scared of the dark and of the storm outside",
    "I am angry, they cancelled my flight again",
    "That was disgusting, I can't believe they served it",
    "Wow, I did not expect that surprise at all",
    "Nothing special, just a normal Tuesday at the office",
]
ENGLISH_IDS = ["joy", "sadness", "fear", "anger", "disgust", "surprise", "neutral"]


@dataclass
class Target:
    """An ingress as the bot sees it, plus the one thing a test cannot do through the API:
    move a stored record to another time (history older than today)."""

    ingress: Ingress
    unauthorised: Ingress
    backdate: Callable[[str, datetime], Awaitable[None]]


@pytest.fixture(params=["fake", "served"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    if request.param == "fake":
        fake = FakeIngress()

        async def move(record_id: str, when: datetime) -> None:
            fake.backdate(record_id, when)

        yield Target(fake, FakeIngress(api_key="not-a-key-0123456789"), move)
        return
    serve_url: str = request.getfixturevalue("serve_url")
    pg_url: str = request.getfixturevalue("pg_url")

    async def backdate(record_id: str, when: datetime) -> None:
        import psycopg

        def update() -> None:
            with psycopg.connect(pg_url) as conn:
                conn.execute(
                    "UPDATE emotion_records SET created_at = %s WHERE id = %s", (when, record_id)
                )

        await asyncio.to_thread(update)

    client = IngressClient(serve_url, TEST_API_KEY, timeout_s=30.0, backoff_s=0.05)
    stranger = IngressClient(serve_url, "hk_" + secrets.token_urlsafe(32), backoff_s=0.05)
    yield Target(client, stranger, backdate)
    await client.aclose()
    await stranger.aclose()


def new_user() -> str:
    return str(secrets.randbelow(10**12) + 10**11)


def _argmax(scores: dict[str, float]) -> str:
    return max(scores, key=scores.__getitem__)


def assert_consistent(result: EmotionResult, language: Language) -> None:
    """The relations any analysis answers: the language's models, full score tables that sum
    to one, the top label named, and derived sentiment following SENTIMENT_OF_EMOTION."""
    emotion_model = registry.BY_NAME[registry.EMOTION_MODEL[language]]
    assert result.language == language
    assert set(result.emotion_scores) == set(emotion_model.labels)
    assert math.isclose(sum(result.emotion_scores.values()), 1.0, abs_tol=1e-3)
    assert result.emotion == _argmax(result.emotion_scores)
    assert result.sentiment == _argmax(result.sentiment_scores)
    names = [ref.name for ref in result.models]
    if language == Language.IT:
        sentiment_model = registry.BY_NAME[registry.SENTIMENT_MODEL[language]]
        assert names == [emotion_model.name, sentiment_model.name]
        assert set(result.sentiment_scores) == set(sentiment_model.labels)
        assert math.isclose(sum(result.sentiment_scores.values()), 1.0, abs_tol=1e-3)
    else:  # no en_sentiment model: derived from the emotion scores
        assert names == [emotion_model.name]
        derived = dict.fromkeys((s.value for s in Sentiment), 0.0)
        for emotion, p in result.emotion_scores.items():
            derived[registry.SENTIMENT_OF_EMOTION[emotion]] += p
        assert result.sentiment_scores.keys() == derived.keys()
        for name, p in derived.items():
            assert math.isclose(result.sentiment_scores[name], p, abs_tol=1e-4), name
    assert result.stored is True
    assert result.record_id is not None
    uuid.UUID(result.record_id)


async def test_an_italian_message_is_answered_by_both_italian_models(target: Target) -> None:
    result = await target.ingress.analyse(ITALIAN, user_id=new_user(), language=None)
    assert_consistent(result, Language.IT)


@pytest.mark.parametrize("text", ENGLISH, ids=ENGLISH_IDS)
async def test_english_sentiment_is_derived_from_each_emotion(target: Target, text: str) -> None:
    """Whichever emotion wins, the sentiment is the sum of its emotions' scores (surprise and
    neutral count as neutral)."""
    result = await target.ingress.analyse(text, user_id=new_user(), language=None)
    assert_consistent(result, Language.EN)


async def _stored(target: Target, user: str, count: int) -> list[EmotionResult]:
    texts = (ITALIAN, ENGLISH[0], ENGLISH[1], ENGLISH[5])
    return [
        await target.ingress.analyse(texts[i % len(texts)], user_id=user, language=None)
        for i in range(count)
    ]


async def test_a_report_counts_what_was_stored_day_by_day(target: Target) -> None:
    """Counts per emotion and sentiment, one entry per day oldest first, the dominant emotion
    (ties: alphabetical), and a streak broken by a day without entries."""
    user = new_user()
    results = await _stored(target, user, 4)
    today = datetime.now(UTC).date()
    assert results[0].record_id is not None
    await target.backdate(results[0].record_id, _noon(today - timedelta(days=2)))

    report = await target.ingress.report(user, 7)
    assert (report.user_id, report.days, report.total) == (user, 7, 4)
    assert [entry.date for entry in report.daily] == [
        today - timedelta(days=6 - i) for i in range(7)
    ]
    assert [entry.total for entry in report.daily] == [0, 0, 0, 0, 1, 0, 3]
    assert report.emotion_counts == Counter(r.emotion for r in results)
    assert report.sentiment_counts == Counter(r.sentiment for r in results)
    assert report.daily[4].emotions == {results[0].emotion: 1}
    assert report.daily[4].sentiment == {results[0].sentiment: 1}
    counts = report.emotion_counts
    assert report.dominant_emotion == min(counts, key=lambda label: (-counts[label], label))
    assert report.streak_days == 1, "today counts; the empty yesterday ends the streak"


async def test_a_streak_is_not_broken_by_a_today_without_entries_yet(target: Target) -> None:
    user = new_user()
    results = await _stored(target, user, 3)
    today = datetime.now(UTC).date()
    for result, back in zip(results, (1, 2, 4), strict=True):
        assert result.record_id is not None
        await target.backdate(result.record_id, _noon(today - timedelta(days=back)))
    report = await target.ingress.report(user, 7)
    assert report.daily[-1].total == 0
    assert report.streak_days == 2


async def test_days_are_the_users_calendar_days(target: Target) -> None:
    """Two records an hour apart in UTC fall on two days in Kiritimati (UTC+14)."""
    user, zone = new_user(), ZoneInfo("Pacific/Kiritimati")
    await target.ingress.update_settings(user, timezone=str(zone))
    results = await _stored(target, user, 2)
    today = datetime.now(zone).date()
    last_night = datetime.combine(today, time(0, 30), zone) - timedelta(hours=1)
    for result, when in zip(results, (last_night, last_night + timedelta(hours=1)), strict=True):
        assert result.record_id is not None
        await target.backdate(result.record_id, when)
    report = await target.ingress.report(user, 7)
    assert report.daily[-1].date == today
    assert [entry.total for entry in report.daily[-2:]] == [1, 1]
    assert report.streak_days == 2


async def test_the_export_is_every_record_oldest_first_as_csv(target: Target) -> None:
    user = new_user()
    first = await target.ingress.analyse('I feel "sad", a bit, today', user_id=user, language=None)
    second = await target.ingress.analyse(ITALIAN, user_id=user, language=None)
    assert second.record_id is not None
    await target.backdate(second.record_id, datetime.now(UTC) - timedelta(days=1))

    rows = list(csv.DictReader(io.StringIO(await target.ingress.export_csv(user))))
    assert rows and tuple(rows[0]) == EXPORT_COLUMNS
    records = [
        ExportRecord.model_validate({k: (v or None) for k, v in row.items()}) for row in rows
    ]
    expected = [(second, ITALIAN), (first, 'I feel "sad", a bit, today')]
    assert [(str(r.id), r.text) for r in records] == [(e.record_id, t) for e, t in expected]
    for record, (result, _) in zip(records, expected, strict=True):
        assert (record.emotion, record.sentiment) == (result.emotion, result.sentiment)
        assert record.language == result.language
        assert math.isclose(record.emotion_score, result.emotion_scores[result.emotion])
        assert (record.model, record.model_revision) == (
            result.models[0].name,
            result.models[0].revision,
        )


async def test_settings_alone_make_a_user_with_an_empty_history(target: Target) -> None:
    user = new_user()
    await target.ingress.update_settings(user, language="it", timezone="Europe/Rome")
    report = await target.ingress.report(user, 7)
    assert (report.total, report.streak_days, report.dominant_emotion) == (0, 0, None)
    assert len(report.daily) == 7 and not report.emotion_counts
    assert (await target.ingress.export_csv(user)).splitlines() == [",".join(EXPORT_COLUMNS)]
    assert await target.ingress.forget(user) is True


async def test_erasure_removes_the_user_and_a_second_one_finds_nothing(target: Target) -> None:
    user = new_user()
    await _stored(target, user, 2)
    assert await target.ingress.forget(user) is True
    for call in (target.ingress.report(user, 7), target.ingress.export_csv(user)):
        with pytest.raises(IngressUserNotFoundError) as caught:
            await call
        assert (caught.value.status, caught.value.code) == (404, "user_not_found")
    assert await target.ingress.forget(user) is False


async def test_an_unknown_user_is_not_found(target: Target) -> None:
    user = new_user()
    with pytest.raises(IngressUserNotFoundError) as caught:
        await target.ingress.report(user, 30)
    assert (caught.value.status, caught.value.code) == (404, "user_not_found")
    assert caught.value.request_id
    assert await target.ingress.forget(user) is False


@pytest.mark.parametrize(
    ("text", "code"),
    [(" \t\n ", "empty_text"), ("a" * 2001, "text_too_long")],
    ids=["empty", "too-long"],
)
async def test_a_bad_message_is_refused_before_anything_is_stored(
    target: Target, text: str, code: str
) -> None:
    user = new_user()
    with pytest.raises(IngressRejectedError) as caught:
        await target.ingress.analyse(text, user_id=user, language=None)
    assert (caught.value.status, caught.value.code) == (422, code)
    assert caught.value.request_id
    with pytest.raises(IngressUserNotFoundError):
        await target.ingress.report(user, 7)


async def test_bad_settings_and_windows_are_refused_as_invalid_requests(target: Target) -> None:
    user = new_user()
    await _stored(target, user, 1)
    calls: list[Awaitable[object]] = [
        target.ingress.update_settings(user, timezone="Mars/Olympus_Mons"),
        target.ingress.update_settings(user, language="fr"),
        target.ingress.report(user, 0),
        target.ingress.report(user, 367),
    ]
    for call in calls:
        with pytest.raises(IngressRejectedError) as caught:
            await call
        assert (caught.value.status, caught.value.code) == (422, "invalid_request")


async def test_an_unknown_key_is_refused_with_401(target: Target) -> None:
    calls: list[Awaitable[object]] = [
        target.unauthorised.analyse(ITALIAN, user_id=new_user(), language=None),
        target.unauthorised.report(new_user(), 7),
    ]
    for call in calls:
        with pytest.raises(IngressRejectedError) as caught:
            await call
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), UTC)
