"""Tokens by expiry as bars of a server-drawn SVG: no JavaScript, no chart library.

Left of "now": expired tokens by how long ago they expired; right of it: active tokens
by how long they have left. Each bar shows its blacklisted share darker.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _

from .counting import BUCKETS, TokenCounts

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


def expiry_chart(counts: TokenCounts) -> Chart:
    """Bars from the oldest expired to the longest-lived active tokens.

    ``counts`` must be taken with ``by_time_left`` (the active tokens' buckets).
    """
    out, black = counts.outstanding, counts.blacklisted
    columns = [
        (_(BUCKETS[i][0]), out.expired_by_age[i], black.expired_by_age[i], True)
        for i in reversed(range(len(BUCKETS)))
    ] + [
        (_(label), out.active_by_left[i], black.active_by_left[i], False)
        for i, (label, _low, _high) in enumerate(BUCKETS)
    ]
    expired_caption, active_caption = _("ago"), _("left")
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
