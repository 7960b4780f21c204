"""Stand-ins for the ingress: `FakeIngress`, an in-memory client (the seam the house style
allows faking), and `ScriptedIngressServer`, a real HTTP server with canned answers that
tests the real client's retries and error mapping.

`FakeIngress` follows the ingress contract closely enough for the bot's tests: messages are
stored per user, the report is computed from what was stored (one entry per day of the
window, oldest first), the CSV has the ingress's columns, and `forget` erases. `analyse`
picks the emotion from a few keywords, so a test knows the answer the bot should give.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from bot.client import IngressRejectedError, IngressUserNotFoundError
from contract import EXPORT_COLUMNS, DailyEntry, EmotionResult, Report
from tests.telegram_server import start_local_server

_KEYWORDS = {
    "felice": "joy",
    "happy": "joy",
    "triste": "sadness",
    "sad": "sadness",
    "paura": "fear",
    "scared": "fear",
    "arrabbiat": "anger",
    "angry": "anger",
}
_SENTIMENT = {"joy": "positive", "surprise": "positive", "neutral": "neutral"}


@dataclass
class Record:
    id: str
    created_at: datetime
    text: str
    emotion: str
    sentiment: str
    language: str


class FakeIngress:
    def __init__(self, *, api_key: str = "fake-ingress-key") -> None:
        self.records: dict[str, list[Record]] = {}
        self.settings: dict[str, dict[str, str]] = {}
        self.reports: list[Report] = []  # every report handed out, newest last
        self.closed = False

    def add(self, user_id: str, text: str, emotion: str, created_at: datetime) -> Record:
        """Seed history (e.g. on past days) as if the person had written it then."""
        record = Record(
            id=str(uuid.uuid4()),
            created_at=created_at,
            text=text,
            emotion=emotion,
            sentiment=_SENTIMENT.get(emotion, "negative"),
            language="it",
        )
        self.records.setdefault(user_id, []).append(record)
        return record

    def backdate(self, record_id: str, created_at: datetime) -> None:
        """Move a stored record to another time."""
        for records in self.records.values():
            for record in records:
                if record.id == record_id:
                    record.created_at = created_at

    async def analyse(self, text: str, *, user_id: str, language: str | None) -> EmotionResult:
        if not text.strip():
            raise IngressRejectedError("empty_text", status=422, request_id="fake")
        lowered = text.lower()
        emotion = next((e for word, e in _KEYWORDS.items() if word in lowered), "neutral")
        record = self.add(user_id, text, emotion, datetime.now(UTC))
        return EmotionResult.model_validate(
            {
                "language": language or "it",
                "language_confidence": 0.99,
                "emotion": emotion,
                "emotion_scores": {emotion: 0.9},
                "sentiment": record.sentiment,
                "sentiment_scores": {record.sentiment: 0.8},
                "models": [{"name": "it_emotion", "revision": "test"}],
                "stored": True,
                "record_id": record.id,
            }
        )

    async def report(self, user_id: str, days: int) -> Report:
        if user_id not in self.records:
            raise IngressUserNotFoundError("user_not_found", status=404, request_id="fake")
        today = datetime.now(UTC).date()
        window = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
        by_day: dict[date, list[Record]] = {day: [] for day in window}
        for record in self.records[user_id]:
            by_day.get(record.created_at.date(), []).append(record)
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
        streak = 0
        for entry in reversed(daily):
            if not entry.total:
                break
            streak += 1
        report = Report(
            user_id=user_id,
            days=days,
            total=sum(emotions.values()),
            emotion_counts=dict(emotions),
            sentiment_counts=dict(Counter(r.sentiment for rows in by_day.values() for r in rows)),
            daily=daily,
            dominant_emotion=emotions.most_common(1)[0][0] if emotions else None,
            streak_days=streak,
        )
        self.reports.append(report)
        return report

    async def export_csv(self, user_id: str) -> str:
        if user_id not in self.records:
            raise IngressUserNotFoundError("user_not_found", status=404, request_id="fake")
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for r in self.records[user_id]:
            row = (r.id, r.created_at.isoformat(), r.text, r.emotion, 0.9, r.sentiment)
            writer.writerow((*row, r.language, "it_emotion", "test"))
        return out.getvalue()

    async def forget(self, user_id: str) -> bool:
        self.settings.pop(user_id, None)
        return self.records.pop(user_id, None) is not None

    async def update_settings(
        self, user_id: str, *, language: str | None = None, timezone: str | None = None
    ) -> None:
        values = {k: v for k, v in (("language", language), ("timezone", timezone)) if v}
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
