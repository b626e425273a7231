from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from my_bathhouse_backend.settings import SIMPLE_JWT
from tokenops.cutoff import (
    FROM_OPTION,
    FROM_SETTING,
    LEEWAY,
    OLDER_THAN,
    SLIDING,
    as_timedelta,
    safe_cutoff,
    sliding_tokens_in_use,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SLIDING_CLASSES = {"AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.SlidingToken",)}


def jwt(**extra):
    return override_settings(SIMPLE_JWT={**SIMPLE_JWT, **extra})


def test_older_than_sets_the_cutoff_when_larger():
    with jwt(LEEWAY=60):
        cutoff = safe_cutoff(timedelta(days=1), now=NOW)
    assert (cutoff.moment, cutoff.reason) == (NOW - timedelta(days=1), OLDER_THAN)


def test_the_cutoff_carries_where_older_than_came_from():
    # The caller (operations) knows whether older_than was asked for or is TOKENOPS'.
    assert safe_cutoff(timedelta(days=1), now=NOW).older_than_source == FROM_OPTION
    from_setting = safe_cutoff(timedelta(days=1), older_than_source=FROM_SETTING, now=NOW)
    assert (from_setting.older_than_source, from_setting.reason) == (FROM_SETTING, OLDER_THAN)
    with jwt(LEEWAY=3600):
        leeway = safe_cutoff(timedelta(0), older_than_source=FROM_SETTING, now=NOW)
    # LEEWAY set the margin; where older_than came from is still known.
    assert (leeway.reason, leeway.older_than_source) == (LEEWAY, FROM_SETTING)
    with pytest.raises(ValueError, match="older_than_source"):
        safe_cutoff(timedelta(0), older_than_source="--older-than", now=NOW)


@pytest.mark.parametrize("leeway", [60, 60.0, timedelta(seconds=60)])
def test_leeway_wins_over_a_smaller_older_than(leeway):
    with jwt(LEEWAY=leeway):
        cutoff = safe_cutoff(timedelta(0), now=NOW)
    assert (cutoff.moment, cutoff.reason) == (NOW - timedelta(seconds=60), LEEWAY)


def test_sliding_tokens_widen_the_cutoff_by_the_refresh_window():
    with jwt(LEEWAY=10, SLIDING_TOKEN_REFRESH_LIFETIME=timedelta(days=1), **SLIDING_CLASSES):
        cutoff = safe_cutoff(timedelta(hours=1), now=NOW)
    assert cutoff.reason == SLIDING
    assert cutoff.moment == NOW - timedelta(days=1, seconds=20)


@pytest.mark.parametrize(("setting", "expected"), [("auto", None), (True, SLIDING), (False, None)])
def test_sliding_setting_forces_the_window(setting, expected):
    with jwt(SLIDING_TOKEN_REFRESH_LIFETIME=timedelta(days=2)):
        cutoff = safe_cutoff(timedelta(0), sliding_tokens=setting, now=NOW)
    assert (cutoff.sliding_window is not None) == (expected is not None)


def test_auto_does_not_widen_when_sliding_tokens_are_explicitly_disabled():
    with jwt(**SLIDING_CLASSES):
        assert safe_cutoff(timedelta(0), sliding_tokens=False, now=NOW).reason == OLDER_THAN


def test_the_sliding_setting_is_the_argument_not_tokenops(settings):
    # The caller (operations) reads TOKENOPS; safe_cutoff only obeys its argument.
    settings.TOKENOPS = {"SLIDING_TOKENS": False}
    with jwt(SLIDING_TOKEN_REFRESH_LIFETIME=timedelta(days=2), **SLIDING_CLASSES):
        assert safe_cutoff(timedelta(0), now=NOW).reason == SLIDING
        settings.TOKENOPS = {"SLIDING_TOKENS": True}
        assert safe_cutoff(timedelta(0), sliding_tokens=False, now=NOW).sliding_window is None


@pytest.mark.parametrize(
    ("configured", "classes", "expected"),
    [
        ("auto", SLIDING_CLASSES, True),
        ("auto", {}, False),
        (True, {}, True),
        (False, SLIDING_CLASSES, False),
    ],
)
def test_sliding_tokens_in_use(configured, classes, expected):
    with jwt(**classes):
        assert sliding_tokens_in_use(configured) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, timedelta(0)),
        (0, timedelta(0)),
        (90, timedelta(seconds=90)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_as_timedelta(value, expected):
    assert as_timedelta(value) == expected


@override_settings(USE_TZ=False, TIME_ZONE="Europe/Moscow")
def test_without_use_tz_the_database_value_is_naive_utc():
    cutoff = safe_cutoff(timedelta(hours=2), now=NOW)
    assert cutoff.db_value() == datetime(2026, 1, 15, 10, 0)
    assert cutoff.db_now() == datetime(2026, 1, 15, 12, 0)


@override_settings(USE_TZ=True, TIME_ZONE="Europe/Moscow")
def test_with_use_tz_the_database_value_is_aware_utc():
    assert safe_cutoff(timedelta(0), now=NOW).db_value() == NOW
