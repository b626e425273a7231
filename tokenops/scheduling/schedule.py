"""One ``Schedule``: when the purge runs and which token_purge options each run gets.

It is parsed and checked once (``parse_schedule``); everything else reads its fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS

from ..durations import parse_duration
from ..errors import TokenopsError

# The Celery task's name, known without importing Celery (tokenops.tasks needs it).
CELERY_TASK = "tokenops.tasks.purge_expired_tokens"
EVERY = ("day", "week")
# Each weekday: its name, and its number in cron (which counts Sunday as 0).
WEEKDAYS: dict[str, tuple[str, int]] = {
    "mon": ("Monday", 1),
    "tue": ("Tuesday", 2),
    "wed": ("Wednesday", 3),
    "thu": ("Thursday", 4),
    "fri": ("Friday", 5),
    "sat": ("Saturday", 6),
    "sun": ("Sunday", 0),
}
DAYS = tuple(WEEKDAYS)
_AT = re.compile(r"([0-9]{1,2}):([0-9]{2})")


@dataclass(frozen=True)
class Schedule:
    """Daily, or weekly on ``day``, at ``hour:minute``; ``older_than`` as the user wrote it."""

    hour: int
    minute: int
    every: str = "day"
    day: str = "sun"
    older_than: str | None = None
    database: str = DEFAULT_DB_ALIAS

    @property
    def weekly(self) -> bool:
        return self.every == "week"

    @property
    def at(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"

    @property
    def day_name(self) -> str:
        return WEEKDAYS[self.day][0]

    @property
    def cron_day_of_week(self) -> str:
        return str(WEEKDAYS[self.day][1]) if self.weekly else "*"

    @property
    def crontab(self) -> str:
        return f"{self.minute} {self.hour} * * {self.cron_day_of_week}"

    @property
    def purge_args(self) -> list[str]:
        args = ["--older-than", self.older_than] if self.older_than else []
        return [*args, "--database", self.database] if self.database != "default" else args

    @property
    def described(self) -> str:
        return f"every {self.day_name if self.weekly else 'day'} at {self.at}"


def parse_at(text: str) -> tuple[int, int]:
    """``HH:MM`` (24-hour) as (hour, minute)."""
    match = _AT.fullmatch(text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise TokenopsError(
            f"Invalid time {text!r}: use 24-hour HH:MM, for example 03:00 or 23:30."
        )
    return int(match[1]), int(match[2])


def parse_schedule(
    at: str,
    every: str = "day",
    day: str = "sun",
    older_than: str | None = None,
    database: str = DEFAULT_DB_ALIAS,
) -> Schedule:
    """Validate the options; a problem is one TokenopsError line."""
    hour, minute = parse_at(at)
    if every not in EVERY:
        raise TokenopsError(f"Invalid --every {every!r}: use day or week.")
    if day not in WEEKDAYS:
        raise TokenopsError(f"Invalid day {day!r}: use one of {', '.join(DAYS)}.")
    if older_than is not None:
        parse_duration(older_than)
        older_than = older_than.strip().lower()
    return Schedule(hour, minute, every, day, older_than, database)
