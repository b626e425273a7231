"""Cheap questions about the token tables, for monitors that ask every minute.

``token_report --check`` must not count a million rows to say "healthy": each probe is
one query that stops as early as the database lets it (EXISTS, ORDER BY ... LIMIT 1).
"""

from __future__ import annotations

from datetime import datetime

from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from .cutoff import Cutoff


def any_purgeable(using: str, cutoff: Cutoff, *, expired_before: datetime | None = None) -> bool:
    """Is at least one token row purgeable (and expired before ``expired_before``, if given)?

    A blacklist row goes with its outstanding row, so only the outstanding table is asked.
    ``expires_at`` has no index (it is simplejwt's table): EXISTS stops at the first row
    found, where MIN(expires_at) or ORDER BY ... LIMIT 1 would read the whole table.
    """
    moment = cutoff.moment if expired_before is None else min(cutoff.moment, expired_before)
    return (
        OutstandingToken.objects.using(using)
        .filter(expires_at__lte=cutoff.db_value(moment))
        .exists()
    )


def purgeable_in_range(using: str, cutoff: Cutoff, lower: int, upper: int) -> bool:
    """Is a purgeable row left with ``lower < pk <= upper`` (one batch's range)?"""
    return (
        OutstandingToken.objects.using(using)
        .filter(pk__gt=lower, pk__lte=upper, expires_at__lte=cutoff.db_value())
        .exists()
    )
