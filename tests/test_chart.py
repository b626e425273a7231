"""expiry_chart: the admin's bars, drawn from counts taken on the real database."""

from datetime import timedelta
from itertools import pairwise

import pytest
from django.utils import translation

from my_bathhouse_backend.settings import SIMPLE_JWT
from tests.utils import make_tokens, utcnow
from tokenops.chart import BOTTOM, HEIGHT, TOP, expiry_chart
from tokenops.counting import count_tokens
from tokenops.cutoff import safe_cutoff

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)
ROOM = HEIGHT - TOP - BOTTOM
LABELS = ["> 30 days", "7-30 days", "1-7 days", "< 1 day"]


@pytest.fixture(autouse=True)
def english(settings):
    settings.SIMPLE_JWT = {**SIMPLE_JWT, "LEEWAY": 0}
    with translation.override("en"):
        yield


@pytest.fixture
def now():
    return utcnow().replace(microsecond=0)


def chart_now(now):
    cutoff = safe_cutoff(timedelta(0), sliding_tokens=False, now=now)
    return expiry_chart(count_tokens("default", cutoff, by_time_left=True))


def tokens(moment, count, blacklisted=0):
    make_tokens(
        [moment] * count, blacklisted=[True] * blacklisted + [False] * (count - blacklisted)
    )


@pytest.fixture
def population(now):
    """Per bar, oldest expired to longest-lived: 1, 2, 4, 8 | 3, 0, 6, 1 tokens."""
    hour = timedelta(hours=1)
    tokens(now - 40 * DAY, 1, blacklisted=1)
    tokens(now - 10 * DAY, 2)
    tokens(now - 3 * DAY, 4, blacklisted=2)
    tokens(now - 2 * hour, 8, blacklisted=8)
    tokens(now + 2 * hour, 3)
    tokens(now + 10 * DAY, 6, blacklisted=3)
    tokens(now + 40 * DAY, 1)


def test_bars_run_from_the_oldest_expired_to_the_longest_lived(now, population):
    chart = chart_now(now)
    bars = chart.bars
    assert [(bar.label, bar.caption, bar.expired) for bar in bars] == [
        *((label, "ago", True) for label in LABELS),
        *((label, "left", False) for label in reversed(LABELS)),
    ]
    assert [(bar.tokens, bar.blacklisted) for bar in bars] == [
        (1, 1),
        (2, 0),
        (4, 2),
        (8, 8),
        (3, 0),
        (0, 0),
        (6, 3),
        (1, 0),
    ]
    assert not chart.empty
    xs = [bar.x for bar in bars]
    assert xs == sorted(xs)
    assert len({b.x - a.x for a, b in pairwise(bars)}) == 1
    # "now" divides the expired bars from the active ones.
    assert bars[3].x + bars[3].width < chart.divider_x < bars[4].x
    assert all(bar.label_x == bar.x + bar.width // 2 for bar in bars)


def test_heights_are_proportional_to_the_tallest(now, population):
    chart = chart_now(now)
    assert chart.baseline == HEIGHT - BOTTOM
    tallest = max(chart.bars, key=lambda bar: bar.tokens)
    assert (tallest.tokens, tallest.height, tallest.y) == (8, ROOM, TOP)
    for bar in chart.bars:
        assert bar.y + bar.height == chart.baseline
        assert abs(bar.height - ROOM * bar.tokens / 8) <= 0.5, bar
    heights = [bar.height for bar in chart.bars]
    assert heights[0] == heights[-1]
    assert heights[2] == 2 * heights[1]
    assert heights[5] == 0


def test_the_blacklisted_share_is_drawn_darker(now, population):
    bars = chart_now(now).bars
    for bar in bars:
        assert bar.black_y + bar.black_height == bar.y + bar.height
        assert abs(bar.black_height - ROOM * bar.blacklisted / 8) <= 0.5, bar
    # All blacklisted: the whole bar; half: half of it; none: nothing.
    assert bars[0].black_height == bars[0].height > 0
    assert bars[3].black_height == bars[3].height == ROOM
    assert bars[2].black_height == bars[2].height // 2
    assert bars[6].black_height == bars[6].height // 2 > 0
    assert bars[1].black_height == bars[4].black_height == bars[7].black_height == 0


def test_a_few_tokens_beside_many_still_show(now):
    tokens(now - 2 * DAY, 1000)
    tokens(now + 2 * DAY, 1, blacklisted=1)
    tokens(now + 10 * DAY, 200, blacklisted=1)
    bars = chart_now(now).bars
    assert bars[2].height == ROOM
    # One token, blacklisted: a bar of at least 2 px, its dark share visible in it.
    assert bars[5].height == 2
    assert 1 <= bars[5].black_height <= bars[5].height
    assert bars[6].height == round(ROOM * 200 / 1000)
    assert bars[6].black_height == 1


def test_no_tokens_is_an_empty_chart(now):
    chart = chart_now(now)
    assert chart.empty
    assert len(chart.bars) == 8
    assert all(
        (bar.tokens, bar.height, bar.black_height, bar.y) == (0, 0, 0, chart.baseline)
        for bar in chart.bars
    )


def test_only_blacklisted_rows_count_in_the_dark_share(now):
    tokens(now + 2 * DAY, 4, blacklisted=1)
    chart = chart_now(now)
    assert not chart.empty
    bar = chart.bars[5]
    assert (bar.tokens, bar.blacklisted, bar.height, bar.black_height) == (4, 1, ROOM, ROOM // 4)


def test_labels_are_translated(now, population):
    cutoff = safe_cutoff(timedelta(0), sliding_tokens=False, now=now)
    counts = count_tokens("default", cutoff, by_time_left=True)
    with translation.override("ru"):
        bars = expiry_chart(counts).bars
    assert bars[3].label == bars[4].label == "< 1 дня"
    assert bars[3].caption != "ago"
