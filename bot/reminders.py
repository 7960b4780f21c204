"""Daily check-ins with PTB's JobQueue, in each person's own timezone.

Times are stored as "HH:MM" plus an IANA zone in `BotState`, so they survive restarts;
`reschedule_all` puts them back on the JobQueue from `post_init`. Job names use the keyed
pseudonym, never the Telegram id, because APScheduler logs job names.
"""

from __future__ import annotations

from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

from telegram.ext import ContextTypes, JobQueue

from bot.state import BotState, Person
from bot.texts import text

DEFAULT_TIMEZONE = {"it": "Europe/Rome", "en": "UTC"}


def job_name(state: BotState, user_id: int) -> str:
    return f"reminder:{state.pseudonym(user_id)}"


def schedule(job_queue: JobQueue[Any], state: BotState, user_id: int, person: Person) -> None:
    """(Re)place the person's daily job; no job when they have no reminder."""
    cancel(job_queue, state, user_id)
    at = person.reminder_time()
    if at is None:
        return
    zone = ZoneInfo(person.timezone or DEFAULT_TIMEZONE[person.language or "en"])
    job_queue.run_daily(
        check_in, time=at.replace(tzinfo=zone), name=job_name(state, user_id), data=user_id
    )


def cancel(job_queue: JobQueue[Any], state: BotState, user_id: int) -> None:
    for job in job_queue.get_jobs_by_name(job_name(state, user_id)):
        job.schedule_removal()


def reschedule_all(job_queue: JobQueue[Any], state: BotState) -> int:
    """Put every stored reminder back on the queue; returns how many there are."""
    count = 0
    for user_id, person in state.people().items():
        if person.reminder:
            schedule(job_queue, state, user_id, person)
            count += 1
    return count


async def check_in(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ask the person how they feel (the JobQueue callback)."""
    assert context.job is not None
    user_id = context.job.data
    assert isinstance(user_id, int)
    state = BotState.of(context.bot_data)
    person = state.people().get(user_id)
    if person is None or not person.reminder:
        return  # erased by /forget between scheduling and firing
    await context.bot.send_message(person.chat_id, text(person.language or "en", "reminder.prompt"))


def parse_time(value: str) -> time | None:
    """ "HH:MM" (24h) to a naive `time`, or None when it is not one."""
    hours, sep, minutes = value.partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit()) or len(minutes) != 2:
        return None
    if int(hours) > 23 or int(minutes) > 59:
        return None
    return time(int(hours), int(minutes))
