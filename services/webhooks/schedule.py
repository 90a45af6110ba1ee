"""When to try a delivery again: the retry schedule, jitter and `Retry-After`.

Pure functions; the clock and the randomness are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# Seconds before each attempt: the first at once, then 5 s, 5 min, 30 min, 2 h,
# 5 h, 10 h and 10 h (about 37.6 hours of trying in all).
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
# Each delay is moved by up to this fraction either way, so that the retries of
# one outage do not all arrive together.
JITTER = 0.1
# A Retry-After further out than this is capped: the schedule still ends.
MAX_RETRY_AFTER = timedelta(hours=24)


def next_attempt_at(
    schedule: Sequence[float],
    attempt_in_round: int,
    now: datetime,
    *,
    jitter: float,
    retry_after: timedelta | None = None,
) -> datetime | None:
    """When attempt `attempt_in_round + 1` is due, or None when the schedule is spent.

    `attempt_in_round` counts the attempts made since the delivery was
    scheduled or requeued (1 after the first). `jitter` is in [-1, 1].
    A `Retry-After` answer is honoured: never sooner than it asks.
    """
    if attempt_in_round >= len(schedule):
        return None
    delay = schedule[attempt_in_round]
    delay *= 1 + JITTER * max(-1.0, min(1.0, jitter))
    due = now + timedelta(seconds=delay)
    if retry_after is not None:
        due = max(due, now + min(retry_after, MAX_RETRY_AFTER))
    return due


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - now)


def parse_schedule(text: str) -> tuple[float, ...]:
    """A schedule from settings: comma-separated seconds, the first usually 0."""
    delays = tuple(float(part) for part in text.replace(" ", "").split(",") if part)
    if not delays or any(d < 0 for d in delays):
        raise ValueError("the retry schedule needs at least one delay, none negative")
    return delays
