"""Count token rows in the database (aggregate queries; no row is loaded into Python)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.utils.translation import gettext_noop
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from .cutoff import Cutoff

# (label, lower bound, upper bound) of how long ago an expired token expired, and of how
# long an active token has left. The labels are English in JSON and CSV; tables and the
# chart translate them (gettext_noop marks them).
BUCKETS: tuple[tuple[str, timedelta, timedelta | None], ...] = (
    (gettext_noop("< 1 day"), timedelta(0), timedelta(days=1)),
    (gettext_noop("1-7 days"), timedelta(days=1), timedelta(days=7)),
    (gettext_noop("7-30 days"), timedelta(days=7), timedelta(days=30)),
    (gettext_noop("> 30 days"), timedelta(days=30), None),
)


@dataclass(frozen=True)
class TableCounts:
    total: int
    active: int
    expired: int
    purgeable: int
    expired_by_age: tuple[int, ...]
    # Active rows by how long they have left (BUCKETS); counted only when asked.
    active_by_left: tuple[int, ...] = ()


@dataclass(frozen=True)
class TokenCounts:
    outstanding: TableCounts
    blacklisted: TableCounts


@dataclass(frozen=True)
class UserTokens:
    user_id: object | None
    username: str | None
    tokens: int


def _aggregate(queryset, expires: str, cutoff: Cutoff, *, by_time_left: bool) -> TableCounts:
    """One scan: totals, expired, purgeable and the buckets as filtered COUNTs."""
    now = cutoff.now
    filters = {
        "total": None,
        "expired": Q(**{f"{expires}__lte": cutoff.db_now()}),
        "purgeable": Q(**{f"{expires}__lte": cutoff.db_value()}),
    }
    for index, (_label, low, high) in enumerate(BUCKETS):
        bucket = Q(**{f"{expires}__lte": cutoff.db_value(now - low)})
        if high is not None:
            bucket &= Q(**{f"{expires}__gt": cutoff.db_value(now - high)})
        filters[f"age{index}"] = bucket
        if by_time_left:
            left = Q(**{f"{expires}__gt": cutoff.db_value(now + low)})
            if high is not None:
                left &= Q(**{f"{expires}__lte": cutoff.db_value(now + high)})
            filters[f"left{index}"] = left
    row = queryset.aggregate(
        **{name: Count("pk", filter=condition) for name, condition in filters.items()}
    )
    return TableCounts(
        total=row["total"],
        active=row["total"] - row["expired"],
        expired=row["expired"],
        purgeable=row["purgeable"],
        expired_by_age=tuple(row[f"age{index}"] for index in range(len(BUCKETS))),
        active_by_left=tuple(row[f"left{index}"] for index in range(len(BUCKETS)) if by_time_left),
    )


def count_tokens(using: str, cutoff: Cutoff, *, by_time_left: bool = False) -> TokenCounts:
    """Counts for both tables, taken at ``cutoff.now``; one scan of each."""
    return TokenCounts(
        outstanding=_aggregate(
            OutstandingToken.objects.using(using), "expires_at", cutoff, by_time_left=by_time_left
        ),
        blacklisted=_aggregate(
            BlacklistedToken.objects.using(using),
            "token__expires_at",
            cutoff,
            by_time_left=by_time_left,
        ),
    )


def top_users(using: str, limit: int) -> list[UserTokens]:
    """Users holding the most outstanding tokens; tokens of deleted users count together."""
    if limit <= 0:
        return []
    rows = list(
        OutstandingToken.objects.using(using)
        .values("user_id")
        .annotate(tokens=Count("pk"))
        .order_by("-tokens", "user_id")[:limit]
    )
    user_model = get_user_model()
    ids = [row["user_id"] for row in rows if row["user_id"] is not None]
    names = dict(
        user_model._default_manager.using(using)
        .filter(pk__in=ids)
        .values_list("pk", user_model.USERNAME_FIELD)
    )
    return [
        UserTokens(
            user_id=row["user_id"],
            username=None if row["user_id"] is None else str(names.get(row["user_id"], "")),
            tokens=row["tokens"],
        )
        for row in rows
    ]
