"""The mood report of one user: counts, a daily series in the user's timezone, and a streak.

Only the label columns are read; no text is decrypted to build a report. Days are calendar
days in `users.timezone`, since "today" for a user in Rome is not today in UTC at 23:30.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contract import DailyEntry, Report
from db.models import EmotionRecord, User, utcnow


async def build_report(
    session: AsyncSession, *, user: User, external_id: str, days: int, now: datetime | None = None
) -> Report:
    """Aggregate the last `days` calendar days (today included), oldest day first."""
    zone = ZoneInfo(user.timezone)
    today = (now or utcnow()).astimezone(zone).date()
    first_day = today - timedelta(days=days - 1)
    since = datetime.combine(first_day, time(), zone).astimezone(UTC)
    rows = await session.execute(
        select(EmotionRecord.created_at, EmotionRecord.emotion, EmotionRecord.sentiment).where(
            EmotionRecord.user_id == user.id, EmotionRecord.created_at >= since
        )
    )
    daily = {
        first_day + timedelta(days=i): DailyEntry(
            date=first_day + timedelta(days=i), total=0, emotions={}, sentiment={}
        )
        for i in range(days)
    }
    emotions: Counter[str] = Counter()
    sentiments: Counter[str] = Counter()
    for created_at, emotion, sentiment in rows:
        entry = daily.get(created_at.astimezone(zone).date())
        if entry is None:  # stored with a clock ahead of ours: not part of "up to today"
            continue
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
        streak_days=await current_streak(session, user=user, today=today),
    )


async def current_streak(session: AsyncSession, *, user: User, today: date) -> int:
    """Consecutive days with an entry up to today; a day without one yet does not break it.

    Reads timestamps newest first and stops at the first gap, so a long history costs only
    as many rows as the streak holds.
    """
    zone = ZoneInfo(user.timezone)
    result = await session.stream_scalars(
        select(EmotionRecord.created_at)
        .where(EmotionRecord.user_id == user.id)
        .order_by(EmotionRecord.created_at.desc())
        .execution_options(yield_per=200)
    )
    streak, expected = 0, today
    try:
        async for created_at in result:
            day = created_at.astimezone(zone).date()
            if day > expected:
                continue  # today's entries after the streak already counted today
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
