"""Stand-ins for the ingress: `FakeIngress`, an in-memory client (the seam the house style
allows faking), and `ScriptedIngressServer`, a real HTTP server with canned answers that
tests the real client's retries and error mapping.

`FakeIngress` keeps the ingress contract, and tests/integration/test_ingress_contract.py
runs the same tests against it and the served app: answers have the registry's models and
full score tables (English sentiment derived by `SENTIMENT_OF_EMOTION`), reports count in the
user's timezone with db/report.py's streak, settings alone make a user, bad input and bad
keys get the service's codes. `analyse` picks the emotion and language from a few keywords,
so a test knows the answer the bot should give; without one it answers neutral (English) or
joy (Italian, whose emotion model has no neutral).
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ValidationError

from bot.client import IngressRejectedError, IngressUserNotFoundError
from contract import EXPORT_COLUMNS, DailyEntry, EmotionResult, Language, Report, UserSettings
from serve_app import registry
from tests.telegram_server import start_local_server

API_KEY = "fake-ingress-key"
MAX_TEXT_CHARS = 2000  # serve_config.yaml's max_text_chars
REVISION = "fake"
_KEYWORDS = {
    "felice": ("joy", Language.IT),
    "triste": ("sadness", Language.IT),
    "paura": ("fear", Language.IT),
    "arrabbiat": ("anger", Language.IT),
    "happy": ("joy", Language.EN),
    "sad": ("sadness", Language.EN),
    "scared": ("fear", Language.EN),
    "angry": ("anger", Language.EN),
    "disgust": ("disgust", Language.EN),
    "surprise": ("surprise", Language.EN),
    "normal": ("neutral", Language.EN),
}
_DEFAULT_EMOTION = {Language.EN: "neutral", Language.IT: "joy"}
_TOP = 0.9  # the probability of the chosen label; the others share the rest


@dataclass
class Record:
    id: str
    created_at: datetime
    text: str
    emotion: str
    sentiment: str
    language: str
    emotion_score: float = _TOP


def _scores(labels: tuple[str, ...], top: str) -> dict[str, float]:
    rest = (1.0 - _TOP) / (len(labels) - 1)
    return {label: _TOP if label == top else rest for label in labels}


def _answer(emotion: str, language: Language) -> EmotionResult:
    """What the router answers when the models pick `emotion`."""
    emotion_model = registry.BY_NAME[registry.EMOTION_MODEL[language]]
    emotion_scores = _scores(emotion_model.labels, emotion)
    sentiment_model = registry.BY_NAME[registry.SENTIMENT_MODEL[language]]
    models = [emotion_model]
    if sentiment_model.required:  # configured in serve_config.yaml
        sentiment_scores = _scores(
            sentiment_model.labels, registry.SENTIMENT_OF_EMOTION[emotion].value
        )
        models.append(sentiment_model)
    else:  # derived, as the router does without an en_sentiment model
        sentiment_scores = dict.fromkeys(sentiment_model.labels, 0.0)
        for label, p in emotion_scores.items():
            sentiment_scores[registry.SENTIMENT_OF_EMOTION[label]] += p
    return EmotionResult.model_validate(
        {
            "language": language,
            "language_confidence": 0.99,
            "emotion": emotion,
            "emotion_scores": emotion_scores,
            "sentiment": max(sentiment_scores, key=sentiment_scores.__getitem__),
            "sentiment_scores": sentiment_scores,
            "models": [{"name": model.name, "revision": REVISION} for model in models],
        }
    )


class FakeIngress:
    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.records: dict[str, list[Record]] = {}  # every user, settings-only ones included
        self.settings: dict[str, dict[str, str]] = {}
        self.reports: list[Report] = []  # every report handed out, newest last
        self.closed = False
        self._authorised = api_key == API_KEY

    def add(self, user_id: str, text: str, emotion: str, created_at: datetime) -> Record:
        """Seed history (e.g. on past days) as if the person had written it then."""
        language = Language.IT if emotion in registry.LABELS["it_emotion"] else Language.EN
        return self._store(user_id, text, _answer(emotion, language), created_at)

    def backdate(self, record_id: str, created_at: datetime) -> None:
        """Move a stored record to another time."""
        for records in self.records.values():
            for record in records:
                if record.id == record_id:
                    record.created_at = created_at

    def _store(self, user_id: str, text: str, result: EmotionResult, when: datetime) -> Record:
        record = Record(
            id=str(uuid.uuid4()),
            created_at=when,
            text=text,
            emotion=result.emotion,
            sentiment=result.sentiment,
            language=result.language,
            emotion_score=result.emotion_scores[result.emotion],
        )
        self.records.setdefault(user_id, []).append(record)
        return record

    def _check(self, code: str | None = None, status: int = 422) -> None:
        if not self._authorised:
            raise IngressRejectedError("unauthorized", status=401, request_id="fake")
        if code is not None:
            raise IngressRejectedError(code, status=status, request_id="fake")

    def _user(self, user_id: str) -> list[Record]:
        self._check()
        if user_id not in self.records:
            raise IngressUserNotFoundError("user_not_found", status=404, request_id="fake")
        return self.records[user_id]

    async def analyse(self, text: str, *, user_id: str, language: str | None) -> EmotionResult:
        self._check()
        if not text.strip():
            self._check("empty_text")
        if len(text) > MAX_TEXT_CHARS:
            self._check("text_too_long")
        lowered = text.lower()
        found = next((hit for word, hit in _KEYWORDS.items() if word in lowered), None)
        lang = found[1] if found else Language(language or Language.IT)
        result = _answer(found[0] if found else _DEFAULT_EMOTION[lang], lang)
        record = self._store(user_id, text, result, datetime.now(UTC))
        return result.model_copy(update={"stored": True, "record_id": record.id})

    async def report(self, user_id: str, days: int) -> Report:
        if not 1 <= days <= 366:
            self._check("invalid_request")
        records = self._user(user_id)
        zone = ZoneInfo(self.settings.get(user_id, {}).get("timezone", "UTC"))
        today = datetime.now(zone).date()
        window = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
        by_day: dict[object, list[Record]] = {day: [] for day in window}
        for record in records:
            by_day.get(record.created_at.astimezone(zone).date(), []).append(record)
        daily = [
            DailyEntry(
                date=day,
                total=len(rows),
                emotions=dict(Counter(r.emotion for r in rows)),
                sentiment=dict(Counter(r.sentiment for r in rows)),
            )
            for day, rows in by_day.items()
        ]
        emotions = Counter(r.emotion for rows in by_day.values() for r in rows)
        written = {record.created_at.astimezone(zone).date() for record in records}
        # As db/report.py: a today without an entry yet does not break the streak.
        day = today if today in written else today - timedelta(days=1)
        streak = 0
        while day in written:
            streak, day = streak + 1, day - timedelta(days=1)
        report = Report(
            user_id=user_id,
            days=days,
            total=sum(emotions.values()),
            emotion_counts=dict(emotions),
            sentiment_counts=dict(Counter(r.sentiment for rows in by_day.values() for r in rows)),
            daily=daily,
            dominant_emotion=min(emotions, key=lambda e: (-emotions[e], e)) if emotions else None,
            streak_days=streak,
        )
        self.reports.append(report)
        return report

    async def export_csv(self, user_id: str) -> str:
        records = sorted(self._user(user_id), key=lambda r: r.created_at)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for r in records:
            model = registry.EMOTION_MODEL[Language(r.language)]
            row = (r.id, r.created_at.isoformat(), r.text, r.emotion, r.emotion_score)
            writer.writerow((*row, r.sentiment, r.language, model, REVISION))
        return out.getvalue()

    async def forget(self, user_id: str) -> bool:
        self._check()
        self.settings.pop(user_id, None)
        return self.records.pop(user_id, None) is not None

    async def update_settings(
        self, user_id: str, *, language: str | None = None, timezone: str | None = None
    ) -> None:
        values = {k: v for k, v in (("language", language), ("timezone", timezone)) if v}
        self._check()
        try:
            UserSettings.model_validate(values)
        except ValidationError:
            self._check("invalid_request")
        self.records.setdefault(user_id, [])  # the ingress creates the user on its first PATCH
        self.settings.setdefault(user_id, {}).update(values)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Scripted:
    """One canned answer of `ScriptedIngressServer`."""

    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class ScriptedIngressServer:
    """A real HTTP server on 127.0.0.1 that answers from a script, to test the HTTP client.

    Each request takes the next `Scripted` answer (the last one repeats) and is recorded with
    its method, path, query and headers, so a test can count retries and check what was sent.
    """

    def __init__(self, *answers: Scripted) -> None:
        self.answers = list(answers)
        self.requests: list[web.Request] = []
        self.bodies: list[bytes] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> ScriptedIngressServer:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner, self.url = await start_local_server(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.bodies.append(await request.read())
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if isinstance(answer.body, str):
            return web.Response(status=answer.status, text=answer.body, headers=answer.headers)
        if answer.body is None:
            return web.Response(status=answer.status, headers=answer.headers)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)
