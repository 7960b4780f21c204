"""The mood report of one user: counts, a daily series in the user's timezone, and a streak.

The labels are sealed with the text (`db.sealed`), so the report opens each of the user's
records in the window, in the app; the database sees only user ids and times. A record that
cannot be opened (a key missing from the ring, a blob changed in the database) is counted in
`unreadable` and in nothing else. Days are calendar days in `users.timezone`, since "today"
for a user in Rome is not today in UTC at 23:30.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contract import DailyEntry, Report
from db.crud import open_record
from db.crypto import CryptoError, KeyRing
from db.models import EmotionRecord, User, utcnow
from db.sealed import Contents


def _open(key_ring: KeyRing, record: EmotionRecord) -> Contents | None:
    try:
        return open_record(key_ring, record)
    except CryptoError:
        return None


async def build_report(
    session: AsyncSession,
    *,
    key_ring: KeyRing,
    user: User,
    external_id: str,
    days: int,
    now: datetime | None = None,
) -> Report:
    """Aggregate the last `days` calendar days (today included), oldest day first."""
    zone = ZoneInfo(user.timezone)
    today = (now or utcnow()).astimezone(zone).date()
    first_day = today - timedelta(days=days - 1)
    since = datetime.combine(first_day, time(), zone).astimezone(UTC)
    records = await session.stream_scalars(
        select(EmotionRecord)
        .where(EmotionRecord.user_id == user.id, EmotionRecord.created_at >= since)
        .execution_options(yield_per=500)
    )
    daily = {
        first_day + timedelta(days=i): DailyEntry(
            date=first_day + timedelta(days=i), total=0, emotions={}, sentiment={}
        )
        for i in range(days)
    }
    emotions: Counter[str] = Counter()
    sentiments: Counter[str] = Counter()
    unreadable = 0
    async for record in records:
        entry = daily.get(record.created_at.astimezone(zone).date())
        if entry is None:  # stored with a clock ahead of ours: not part of "up to today"
            continue
        contents = _open(key_ring, record)
        if contents is None:
            unreadable += 1
            continue
        emotion, sentiment = contents.emotion, contents.sentiment
        entry.total += 1
        entry.emotions[emotion] = entry.emotions.get(emotion, 0) + 1
        emotions[emotion] += 1
        if sentiment is not None:
            entry.sentiment[sentiment] = entry.sentiment.get(sentiment, 0) + 1
            sentiments[sentiment] += 1
    # Highest count wins; ties go to the alphabetically first label so answers are stable.
    dominant = min(emotions, key=lambda label: (-emotions[label], label)) if emotions else None
    return Report(
        user_id=external_id,
        days=days,
        total=sum(emotions.values()),
        emotion_counts=dict(emotions),
        sentiment_counts=dict(sentiments),
        daily=list(daily.values()),
        dominant_emotion=dominant,
        streak_days=await current_streak(session, key_ring=key_ring, user=user, today=today),
        unreadable=unreadable,
    )


async def current_streak(
    session: AsyncSession, *, key_ring: KeyRing, user: User, today: date
) -> int:
    """Consecutive days with a readable entry up to today; a day without one yet does not
    break it.

    Reads records newest first and stops at the first gap, so a long history costs only
    as many rows as the streak holds.
    """
    zone = ZoneInfo(user.timezone)
    result = await session.stream_scalars(
        select(EmotionRecord)
        .where(EmotionRecord.user_id == user.id)
        .order_by(EmotionRecord.created_at.desc())
        .execution_options(yield_per=200)
    )
    streak, expected = 0, today
    try:
        async for record in result:
            day = record.created_at.astimezone(zone).date()
            if day > expected:
                continue  # today's entries after the streak already counted today
            if _open(key_ring, record) is None:
                continue  # an entry nobody can read does not make a day
            if day == expected:
                streak += 1
                expected = day - timedelta(days=1)
            elif streak == 0 and day == today - timedelta(days=1):
                streak, expected = 1, day - timedelta(days=1)
            else:
                break
    finally:
        await result.close()
    return streak
