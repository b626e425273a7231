"""Cheap questions about the token tables, for monitors that ask every minute.

``token_report --check`` must not count a million rows to say "healthy": each probe is
one query that stops as early as the database lets it (EXISTS, ORDER BY ... LIMIT 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Max, Min
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from .cutoff import Cutoff


def _latest_expiry(cutoff: Cutoff, expired_before: datetime | None) -> datetime:
    """The latest expiry a probed row may have: the cutoff, or ``expired_before`` if earlier."""
    return cutoff.moment if expired_before is None else min(cutoff.moment, expired_before)


def any_purgeable(using: str, cutoff: Cutoff, *, expired_before: datetime | None = None) -> bool:
    """Is at least one token row purgeable (and expired before ``expired_before``, if given)?

    A blacklist row goes with its outstanding row, so only the outstanding table is asked.
    ``expires_at`` has no index (it is simplejwt's table): EXISTS stops at the first row
    found, where MIN(expires_at) or ORDER BY ... LIMIT 1 would read the whole table.
    """
    moment = _latest_expiry(cutoff, expired_before)
    return (
        OutstandingToken.objects.using(using)
        .filter(expires_at__lte=cutoff.db_value(moment))
        .exists()
    )


@dataclass(frozen=True)
class Watermark:
    """The outstanding table's highest id (0: empty) and earliest expiry (aware UTC)."""

    last_token_id: int
    next_expiry: datetime | None


def watermark(using: str) -> Watermark:
    """One scan (no index on ``expires_at``), paid once at the end of a complete purge."""
    found = OutstandingToken.objects.using(using).aggregate(
        last=Max("pk"), earliest=Min("expires_at")
    )
    earliest = found["earliest"]
    if earliest is not None and timezone.is_naive(earliest):
        # simplejwt stores naive UTC when USE_TZ is False, not TIME_ZONE's local time.
        earliest = earliest.replace(tzinfo=UTC)
    return Watermark(found["last"] or 0, earliest)


def any_purgeable_since(
    using: str,
    cutoff: Cutoff,
    mark: Watermark | None,
    *,
    expired_before: datetime | None = None,
) -> bool:
    """``any_purgeable``, knowing where a complete purge left the table (if it is known).

    Rows up to ``mark.last_token_id`` expire at ``mark.next_expiry`` or later: while that
    is after the cutoff, only the rows added since can be purgeable, and the primary key
    finds them without reading the table. simplejwt never changes ``expires_at``.
    """
    moment = _latest_expiry(cutoff, expired_before)
    if mark is None or (mark.next_expiry is not None and mark.next_expiry <= moment):
        return any_purgeable(using, cutoff, expired_before=expired_before)
    return (
        OutstandingToken.objects.using(using)
        .filter(pk__gt=mark.last_token_id, expires_at__lte=cutoff.db_value(moment))
        .exists()
    )


def purgeable_in_range(using: str, cutoff: Cutoff, lower: int, upper: int) -> bool:
    """Is a purgeable row left with ``lower < pk <= upper`` (one batch's range)?"""
    return (
        OutstandingToken.objects.using(using)
        .filter(pk__gt=lower, pk__lte=upper, expires_at__lte=cutoff.db_value())
        .exists()
    )
