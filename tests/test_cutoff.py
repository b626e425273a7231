from datetime import datetime, timedelta, timezone

import pytest
from django.test import override_settings

from my_bathhouse_backend.settings import SIMPLE_JWT
from tokenops.cutoff import LEEWAY, OLDER_THAN, SLIDING, safe_cutoff

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
SLIDING_CLASSES = {"AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.SlidingToken",)}


def jwt(**extra):
    return override_settings(SIMPLE_JWT={**SIMPLE_JWT, **extra})


def test_older_than_sets_the_cutoff_when_larger():
    with jwt(LEEWAY=60):
        cutoff = safe_cutoff(timedelta(days=1), now=NOW)
    assert (cutoff.moment, cutoff.reason) == (NOW - timedelta(days=1), OLDER_THAN)


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
    with (
        jwt(SLIDING_TOKEN_REFRESH_LIFETIME=timedelta(days=2)),
        override_settings(TOKENOPS={"SLIDING_TOKENS": setting}),
    ):
        cutoff = safe_cutoff(timedelta(0), now=NOW)
    assert (cutoff.sliding_window is not None) == (expected is not None)


def test_auto_does_not_widen_when_sliding_tokens_are_explicitly_disabled():
    with jwt(**SLIDING_CLASSES), override_settings(TOKENOPS={"SLIDING_TOKENS": False}):
        assert safe_cutoff(timedelta(0), now=NOW).reason == OLDER_THAN


@override_settings(USE_TZ=False, TIME_ZONE="Europe/Moscow")
def test_without_use_tz_the_database_value_is_naive_utc():
    cutoff = safe_cutoff(timedelta(hours=2), now=NOW)
    assert cutoff.db_value() == datetime(2026, 1, 15, 10, 0)
    assert cutoff.db_now() == datetime(2026, 1, 15, 12, 0)


@override_settings(USE_TZ=True, TIME_ZONE="Europe/Moscow")
def test_with_use_tz_the_database_value_is_aware_utc():
    assert safe_cutoff(timedelta(0), now=NOW).db_value() == NOW
