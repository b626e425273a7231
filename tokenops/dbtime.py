"""Datetimes as a DateTimeField stores them, whatever USE_TZ says."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone


def to_db(moment: datetime) -> datetime:
    """An aware datetime as a DateTimeField holds it (naive local time when USE_TZ=False)."""
    return moment if settings.USE_TZ else timezone.make_naive(moment)


def db_now() -> datetime:
    """Now, as a DateTimeField holds it; one clock for every history row and comparison.

    ``timezone.now()`` gives the OS's local time when USE_TZ=False, which on Windows
    need not be TIME_ZONE; ``to_db`` always uses TIME_ZONE.
    """
    return to_db(datetime.now(UTC))


def as_utc(value: datetime) -> datetime:
    """A DateTimeField value as an aware UTC datetime."""
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value.astimezone(UTC)
