"""Tokens by expiry as bars of a server-drawn SVG: no JavaScript, no chart library.

Left of "now": expired tokens by how long ago they expired; right of it: active tokens
by how long they have left. Each bar shows its blacklisted share darker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from .counting import AGE_BUCKETS, TokenCounts
from .cutoff import Cutoff

# (label, lower bound, upper bound) of how long an active token has left.
LEFT_BUCKETS: tuple[tuple[Any, timedelta, timedelta | None], ...] = (
    (_("< 1 day"), timedelta(0), timedelta(days=1)),
    (_("1-7 days"), timedelta(days=1), timedelta(days=7)),
    (_("7-30 days"), timedelta(days=7), timedelta(days=30)),
    (_("> 30 days"), timedelta(days=30), None),
)
# The same spans for AGE_BUCKETS (expired tokens), in the same order.
AGE_LABELS = (_("< 1 day"), _("1-7 days"), _("7-30 days"), _("> 30 days"))

WIDTH, HEIGHT = 760, 280
TOP, BOTTOM, LEFT = 28, 64, 16
SLOT = (WIDTH - 2 * LEFT) // 8
BAR = SLOT - 22


@dataclass(frozen=True)
class Bar:
    label: str
    caption: str
    tokens: int
    blacklisted: int
    expired: bool
    x: int
    width: int
    y: int
    height: int
    black_y: int
    black_height: int

    @property
    def label_x(self) -> int:
        return self.x + self.width // 2


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - BOTTOM
    divider_x: int = LEFT + 4 * SLOT

    @property
    def empty(self) -> bool:
        return not any(bar.tokens for bar in self.bars)


def _left_counts(queryset, expires: str, cutoff: Cutoff) -> list[int]:
    now = cutoff.now
    filters = {}
    for index, (_label, low, high) in enumerate(LEFT_BUCKETS):
        bucket = Q(**{f"{expires}__gt": cutoff.db_value(now + low)})
        if high is not None:
            bucket &= Q(**{f"{expires}__lte": cutoff.db_value(now + high)})
        filters[f"left{index}"] = bucket
    row = queryset.aggregate(**{name: Count("pk", filter=q) for name, q in filters.items()})
    return [row[f"left{index}"] for index in range(len(LEFT_BUCKETS))]


def expiry_chart(using: str, cutoff: Cutoff, counts: TokenCounts) -> Chart:
    """Bars from the oldest expired to the longest-lived active tokens."""
    assert len(AGE_BUCKETS) == len(AGE_LABELS)
    outstanding_left = _left_counts(OutstandingToken.objects.using(using), "expires_at", cutoff)
    blacklisted_left = _left_counts(
        BlacklistedToken.objects.using(using), "token__expires_at", cutoff
    )
    columns = [
        (
            str(AGE_LABELS[i]),
            counts.outstanding.expired_by_age[i],
            counts.blacklisted.expired_by_age[i],
            True,
        )
        for i in reversed(range(len(AGE_BUCKETS)))
    ] + [
        (str(label), outstanding_left[i], blacklisted_left[i], False)
        for i, (label, _low, _high) in enumerate(LEFT_BUCKETS)
    ]
    expired_caption, active_caption = str(_("ago")), str(_("left"))
    tallest = max([tokens for _label, tokens, _black, _expired in columns] + [1])
    room = HEIGHT - TOP - BOTTOM
    baseline = HEIGHT - BOTTOM
    bars = []
    for index, (label, tokens, blacklisted, expired) in enumerate(columns):
        height = round(room * tokens / tallest)
        if tokens and height < 2:
            height = 2
        black_height = min(height, round(room * blacklisted / tallest)) if blacklisted else 0
        if blacklisted and black_height < 1:
            black_height = 1
        bars.append(
            Bar(
                label=label,
                caption=expired_caption if expired else active_caption,
                tokens=tokens,
                blacklisted=blacklisted,
                expired=expired,
                x=LEFT + index * SLOT + (SLOT - BAR) // 2,
                width=BAR,
                y=baseline - height,
                height=height,
                black_y=baseline - black_height,
                black_height=black_height,
            )
        )
    return Chart(bars=bars)
