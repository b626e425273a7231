"""tokenops.scheduling.schedule: parsing the options once, and what a Schedule says."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import pytest
from celery.schedules import crontab

from tokenops.errors import TokenopsError
from tokenops.scheduling.schedule import (
    DAYS,
    EVERY,
    WEEKDAYS,
    Schedule,
    parse_at,
    parse_schedule,
)

# Monday 2024-01-01, so DAYS[i] falls on MONDAY + i days.
MONDAY = date(2024, 1, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("03:00", (3, 0)), ("4:30", (4, 30)), (" 23:59 ", (23, 59)), ("00:00", (0, 0))],
)
def test_parse_at_reads_24_hour_times(text, expected):
    assert parse_at(text) == expected


@pytest.mark.parametrize("text", ["24:00", "12:60", "3pm", "3:5", "", "03:00:00", "-1:00"])
def test_parse_at_refuses_anything_else_in_one_line(text):
    with pytest.raises(TokenopsError) as caught:
        parse_at(text)
    assert str(caught.value) == (
        f"Invalid time {text!r}: use 24-hour HH:MM, for example 03:00 or 23:30."
    )


def test_parse_schedule_defaults():
    assert parse_schedule("3:05") == Schedule(3, 5, "day", "sun", None, "default")


def test_parse_schedule_keeps_older_than_as_written_but_normalised():
    schedule = parse_schedule("04:00", "week", "fri", " 1W2D ", "secondary")

    assert schedule == Schedule(4, 0, "week", "fri", "1w2d", "secondary")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": "month"}, "Invalid --every 'month': use day or week."),
        ({"day": "sunday"}, "Invalid day 'sunday': use one of mon, tue, wed, thu, fri, sat, sun."),
        ({"older_than": "soon"}, "Invalid duration 'soon'"),
        ({"at": "25:00"}, "Invalid time '25:00'"),
    ],
)
def test_parse_schedule_refuses_bad_options(options, message):
    with pytest.raises(TokenopsError) as caught:
        parse_schedule(**{"at": "03:00", **options})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_days_and_every_are_what_the_command_offers():
    assert DAYS == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert EVERY == ("day", "week")
    assert tuple(WEEKDAYS) == DAYS


@pytest.mark.parametrize("offset", range(7))
def test_each_weekday_names_and_numbers_the_real_day(offset):
    day = DAYS[offset]
    real = MONDAY + timedelta(days=offset)
    schedule = Schedule(4, 5, "week", day)

    assert schedule.weekly
    assert schedule.day_name == calendar.day_name[real.weekday()] == real.strftime("%A")
    # cron counts Sunday as 0, Monday as 1.
    assert schedule.cron_day_of_week == str(real.isoweekday() % 7)
    assert schedule.crontab == f"5 4 * * {real.isoweekday() % 7}"
    assert schedule.described == f"every {real.strftime('%A')} at 04:05"
    # Celery reads the day name and the number as the same day.
    assert crontab(day_of_week=day).day_of_week == {int(schedule.cron_day_of_week)}


@pytest.mark.parametrize("day", DAYS)
def test_a_daily_schedule_ignores_its_day(day):
    schedule = Schedule(23, 0, "day", day)

    assert not schedule.weekly
    assert schedule.cron_day_of_week == "*"
    assert schedule.crontab == "0 23 * * *"
    assert schedule.described == "every day at 23:00"


@pytest.mark.parametrize(
    ("hour", "minute", "at"), [(0, 0, "00:00"), (3, 5, "03:05"), (23, 59, "23:59")]
)
def test_at_is_zero_padded_and_crontab_is_not(hour, minute, at):
    schedule = Schedule(hour, minute)

    assert schedule.at == at
    assert schedule.crontab == f"{minute} {hour} * * *"


@pytest.mark.parametrize(
    ("older_than", "database", "args"),
    [
        (None, "default", []),
        ("7d", "default", ["--older-than", "7d"]),
        (None, "secondary", ["--database", "secondary"]),
        ("2w", "my db", ["--older-than", "2w", "--database", "my db"]),
    ],
)
def test_purge_args_are_only_the_options_given(older_than, database, args):
    assert Schedule(3, 0, older_than=older_than, database=database).purge_args == args
