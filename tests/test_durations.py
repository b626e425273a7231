from datetime import timedelta

import pytest

from tokenops.durations import MAX_DURATION, format_duration, parse_duration
from tokenops.errors import TokenopsError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1w2d", timedelta(days=9)),
        ("1d12h30m", timedelta(days=1, hours=12, minutes=30)),
        ("0d", timedelta(0)),
        ("0", timedelta(0)),
        (" 7D ", timedelta(days=7)),
        (" 7d", timedelta(days=7)),
        ("7D", timedelta(days=7)),
        ("1W2D3H", timedelta(days=9, hours=3)),
        ("520w", timedelta(weeks=520)),
        ("3650d", MAX_DURATION),
        # Leading zeros are read by value, not counted as digits.
        ("0000001d", timedelta(days=1)),
        ("0" * 10_000 + "1d", timedelta(days=1)),
        ("00005256000m", MAX_DURATION),
    ],
)
def test_valid_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "7", "d", "-1d", "1.5d", "7x", "7 d", "1w-2d", "7д", "abc", "+7d", "\u0667d"]
)
def test_invalid_durations_show_examples(text):
    with pytest.raises(TokenopsError) as raised:
        parse_duration(text)
    assert str(raised.value) == (
        f"Invalid duration {text!r}: use a whole number and a unit (m, h, d, w), "
        "for example 30m, 12h, 7d, 2w or 1w2d."
    )


@pytest.mark.parametrize("text", ["3651d", "600w", "99999999999d", "100000h", "5256001m"])
def test_absurd_durations_are_refused(text):
    with pytest.raises(TokenopsError, match="too large") as raised:
        parse_duration(text)
    assert str(raised.value) == f"Duration {text!r} is too large (at most 10 years)."


@pytest.mark.parametrize("text", ["7d7d", "1d1d1d", "30m1d", "1d1w", "12h1d", "1m1m"])
def test_repeated_or_unordered_units_are_refused(text):
    with pytest.raises(TokenopsError) as raised:
        parse_duration(text)
    assert str(raised.value) == (
        f"Invalid duration {text!r}: give each unit at most once, largest first, "
        "for example 30m, 12h, 7d, 2w or 1w2d."
    )


@pytest.mark.parametrize("text", ["6M", "1w30M", " 2M "])
def test_a_capital_m_is_refused_as_ambiguous(text):
    with pytest.raises(TokenopsError) as raised:
        parse_duration(text)
    assert str(raised.value) == (
        f"Invalid duration {text!r}: M is ambiguous (months or minutes?); write m for "
        "minutes, or weeks or days for months, for example 30m, 12h, 7d, 2w or 1w2d."
    )


def test_a_huge_value_is_refused_by_value_and_echoed_cut():
    with pytest.raises(TokenopsError) as raised:
        parse_duration("7" * 10_000 + "d")
    assert str(raised.value) == f"Duration '{'7' * 40}'... is too large (at most 10 years)."


def test_a_huge_invalid_value_is_echoed_cut():
    with pytest.raises(TokenopsError) as raised:
        parse_duration("\x1b" * 10_000)
    escaped = "\\x1b" * 40
    assert str(raised.value) == (
        f"Invalid duration '{escaped}'...: use a whole number and a unit (m, h, d, w), "
        "for example 30m, 12h, 7d, 2w or 1w2d."
    )


@pytest.mark.parametrize("text", ["30m", "12h", "1w2d", "1d12h30m"])
def test_format_round_trips(text):
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0m"),
        (timedelta(minutes=30), "30m"),
        (timedelta(days=9), "1w2d"),
        (timedelta(days=1, hours=12, minutes=30), "1d12h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=1, seconds=20), "1d20s"),
    ],
)
def test_format_uses_the_units_parse_reads(value, text):
    assert format_duration(value) == text
