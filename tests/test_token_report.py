"""The token_report command: options, formats and databases, as a user runs it."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from my_bathhouse_backend.settings import SIMPLE_JWT
from tests.utils import (
    delete_user_keeping_tokens,
    make_orphans,
    make_tokens,
    overdue_everywhere,
    recorded_run,
    utcnow,
)
from tokenops.models import PurgeRun
from tokenops.operations import ReportRequest, check_health

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "secondary"])


def never_purged(purgeable: int) -> str:
    """The stderr of a report on a database never purged where a purgeable token expired
    more than PURGE_WARN_AFTER (2w) ago, as report_population's 40-day-old one did."""
    return (
        f"Warning: no purge has ever succeeded, and {purgeable} tokens are purgeable (the "
        "oldest expired more than 2w ago). Is the scheduled purge running?\n"
    )


def report(manage, *args):
    result = manage("token_report", "--format", "json", *args)
    data = json.loads(result.out)
    overdue = data["purge_overdue"]
    assert (result.code, result.err) == (
        0,
        never_purged(data["outstanding"]["purgeable"]) if overdue else "",
    )
    return data


EXPECTED = {
    "outstanding": {"total": 7, "active": 2, "expired": 5, "purgeable": 4},
    "blacklisted": {"total": 3, "active": 1, "expired": 2, "purgeable": 1},
}


@override_settings(SIMPLE_JWT={**SIMPLE_JWT, "LEEWAY": 60})
def test_counts_respect_leeway(manage, report_population):
    data = report(manage)
    assert {key: data[key] for key in EXPECTED} == EXPECTED
    assert data["cutoff_reason"] == "LEEWAY"
    assert data["older_than_source"] == "setting"
    assert data["database"] == "default"
    assert [(b["age"], b["outstanding"], b["blacklisted"]) for b in data["expired_by_age"]] == [
        ("< 1 day", 2, 2),
        ("1-7 days", 1, 0),
        ("7-30 days", 1, 0),
        ("> 30 days", 1, 0),
    ]


@pytest.fixture
def moscow_without_tz(settings):
    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Moscow"


@override_settings(SIMPLE_JWT={**SIMPLE_JWT, "LEEWAY": 60})
def test_counts_without_use_tz_in_a_non_utc_time_zone(manage, moscow_without_tz, report_population):
    # Moscow is UTC+3: comparing naive UTC rows with local time would call the
    # token expiring in 1 h expired and the LEEWAY token purgeable.
    assert {key: report(manage)[key] for key in EXPECTED} == EXPECTED


def test_without_leeway_every_expired_row_is_purgeable(manage, report_population):
    data = report(manage)
    assert data["outstanding"]["purgeable"] == 5
    assert data["blacklisted"]["purgeable"] == 2


def test_older_than_keeps_recently_expired_rows(manage, report_population):
    data = report(manage, "--older-than", "1w")
    assert (data["outstanding"]["purgeable"], data["blacklisted"]["purgeable"]) == (2, 0)
    assert data["cutoff_reason"] == "older-than"
    assert data["older_than_source"] == "option"


def test_older_than_setting_is_the_default(manage, settings, report_population):
    settings.TOKENOPS = {"OLDER_THAN": "1w"}
    data = report(manage)
    assert (data["outstanding"]["purgeable"], data["blacklisted"]["purgeable"]) == (2, 0)
    assert (data["cutoff_reason"], data["older_than_seconds"]) == ("older-than", 7 * 86400)
    assert data["older_than_source"] == "setting"


def test_top_users_name_deleted_users(manage, report_population):
    data = report(manage, "--top", "3")
    assert data["top_users"] == [
        {"user_id": data["top_users"][0]["user_id"], "username": "alice", "tokens": 4},
        {"user_id": data["top_users"][1]["user_id"], "username": "bob", "tokens": 2},
        {"user_id": None, "username": None, "tokens": 1},
    ]


def test_report_top_setting_is_the_default(manage, settings, report_population):
    settings.TOKENOPS = {"REPORT_TOP": 1}
    assert [user["username"] for user in report(manage)["top_users"]] == ["alice"]


def test_table_shows_summary_buckets_and_users(manage, report_population):
    result = manage("token_report", "--top", "3")
    assert (result.code, result.err) == (0, never_purged(5))
    lines = result.out.splitlines()
    assert lines[0].startswith("Token report for database 'default' at ")
    assert lines[1].endswith(
        " UTC are purgeable (set by TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m)."
    )
    assert lines[3:7] == [
        "tokens         total    active    expired    purgeable",
        "-----------  -------  --------  ---------  -----------",
        "outstanding        7         2          5            5",
        "blacklisted        3         1          2            2",
    ]
    assert "Top 3 users by outstanding tokens" in lines
    assert "(deleted user)         1" in lines


SLIDING_JWT = {
    **SIMPLE_JWT,
    "AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.SlidingToken",),
}


@pytest.mark.parametrize(
    ("args", "settings", "named"),
    [
        (["--older-than", "1w"], {}, "(set by --older-than; --older-than 1w, LEEWAY 0m)."),
        (
            [],
            {"TOKENOPS": {"OLDER_THAN": "1w"}},
            "(set by TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 1w, LEEWAY 0m).",
        ),
        (
            [],
            {"SIMPLE_JWT": {**SIMPLE_JWT, "LEEWAY": 60}},
            "(set by LEEWAY; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 1m).",
        ),
        (
            ["--older-than", "30m"],
            {"SIMPLE_JWT": {**SIMPLE_JWT, "LEEWAY": 3600}},
            "(set by LEEWAY; --older-than 30m, LEEWAY 1h).",
        ),
        (
            [],
            {"SIMPLE_JWT": SLIDING_JWT},
            "(set by the sliding window; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m, sliding window 1d).",
        ),
    ],
)
def test_cutoff_line_names_where_the_margin_came_from(
    manage, report_population, args, settings, named
):
    with override_settings(**settings):
        result = manage("token_report", "--top", "0", *args)
    assert result.code == 0
    assert result.err.startswith("Warning: no purge has ever succeeded, and ")
    cutoff = result.out.splitlines()[1]
    assert cutoff.startswith("Cutoff: tokens that expired at or before ")
    assert cutoff.endswith(f" UTC are purgeable {named}")


def test_top_users_heading_is_singular_for_one(manage, report_population):
    lines = manage("token_report", "--top", "1").out.splitlines()
    assert "Top 1 user by outstanding tokens" in lines
    assert "Top 2 users by outstanding tokens" in manage("token_report", "--top", "2").out


def test_csv_is_the_summary(manage, report_population):
    result = manage("token_report", "--format", "csv")
    assert result.out.splitlines() == [
        "tokens,total,active,expired,purgeable",
        "outstanding,7,2,5,5",
        "blacklisted,3,1,2,2",
    ]


def test_top_zero_hides_the_user_list(manage, report_population):
    result = manage("token_report", "--top", "0")
    assert result.code == 0
    assert "users by outstanding tokens" not in result.out


def test_database_option_reads_the_other_database(manage, make_tokens, report_population):
    make_tokens([utcnow() - timedelta(days=1)], using="secondary")
    data = report(manage, "--database", "secondary")
    assert data["database"] == "secondary"
    assert data["outstanding"] == {"total": 1, "active": 0, "expired": 1, "purgeable": 1}


@pytest.mark.parametrize("using", ["default", "secondary"])
def test_orphans_and_users_that_are_gone_have_their_own_lines(manage, using):
    """Rows left by foreign-key checks off: counted as orphans, shown as deleted users."""
    now = utcnow()
    users = get_user_model()._default_manager.db_manager(using)
    zoe, gone = users.create(username="zoe"), users.create(username="gone")
    make_tokens([now - timedelta(days=2)] * 2, blacklisted=True, user=zoe, using=using)
    make_tokens([now + timedelta(days=2)] * 3, user=gone, using=using)
    make_orphans(make_tokens([now] * 4, blacklisted=True, user=zoe, using=using), using)
    delete_user_keeping_tokens(gone, using)

    table = manage("token_report", "--database", using, "--top", "2")
    data = report(manage, "--database", using)

    assert (table.code, table.err) == (0, "")
    assert table.out.splitlines()[3:9] == [
        "tokens         total    active    expired    purgeable",
        "-----------  -------  --------  ---------  -----------",
        "outstanding        5         3          2            2",
        "blacklisted        2         0          2            2",
        "orphaned           4         -          -            4",
        "orphaned: blacklist rows whose outstanding token row is gone; they blacklist "
        "nothing, and a purge deletes them.",
    ]
    assert table.out.splitlines()[-8:] == [
        "user              tokens",
        "--------------  --------",
        "(deleted user)         3",
        "zoe                    2",
        "",
        "In-app sweeps are off.",
        "",
        "Last successful purge: none recorded.",
    ]
    assert data["orphaned_blacklisted"] == 4
    assert data["top_users"][0] == {"user_id": gone.pk, "username": None, "tokens": 3}


HOSTILE = "eve\x1b[2J\x1b[H\rroot 1\nmallory"


def test_a_hostile_user_name_is_escaped_in_the_table_and_exact_in_json_and_csv(manage):
    make_tokens([utcnow()] * 2, user=get_user_model()._default_manager.create(username=HOSTILE))

    table = manage("token_report", "--top", "1")
    data = report(manage, "--top", "1")

    assert (table.code, table.err) == (0, "")
    assert table.out.splitlines()[-7:] == [
        "user                                 tokens",
        "---------------------------------  --------",
        "eve\\x1b[2J\\x1b[H\\rroot 1\\nmallory         2",
        "",
        "In-app sweeps are off.",
        "",
        "Last successful purge: none recorded.",
    ]
    assert not any(char in table.out for char in "\x1b\r")
    assert data["top_users"][0]["username"] == HOSTILE


def test_an_unknown_database_alias_exits_2(manage):
    result = manage("token_report", "--check", "--database", "nope")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "manage.py token_report: error: argument --database: Unknown database alias 'nope' "
        "(configured: default, secondary).\n"
    )


# When a purge is overdue: the report answers as --check does (one rule, in operations).

NEVER_PURGED_WARNING = (
    "Warning: no purge has ever succeeded, and 3 tokens are purgeable (the oldest expired "
    "more than 2w ago). Is the scheduled purge running?\n"
)


@pytest.mark.parametrize("history", ["none", "a purge running now", "a skipped run"])
def test_never_purged_with_a_backlog_older_than_purge_warn_after_is_overdue(manage, history):
    now = utcnow()
    make_tokens([now - timedelta(days=20)] * 2 + [now - timedelta(days=3)], user=None)
    if history == "a purge running now":
        recorded_run(PurgeRun.Outcome.RUNNING, ago=timedelta(seconds=5), finished_at=None)
    elif history == "a skipped run":
        recorded_run(PurgeRun.Outcome.SKIPPED, ago=timedelta(minutes=1))
    assert overdue_everywhere() == (True, NEVER_PURGED_WARNING, True)
    assert manage("token_report").err == NEVER_PURGED_WARNING
    assert check_health(ReportRequest()).reason == "never"
    assert manage("token_report", "--check").code == 4


@pytest.mark.parametrize("history", ["none", "a dry run", "a failed run", "a skipped run"])
def test_never_purged_with_no_backlog_older_than_purge_warn_after_is_not_overdue(manage, history):
    make_tokens([utcnow() - timedelta(days=3)] * 2, user=None)
    # A history that began long ago says nothing about how long tokens have waited.
    long_ago = timedelta(days=20)
    if history == "a dry run":
        recorded_run(ago=long_ago, dry_run=True)
    elif history == "a failed run":
        recorded_run(PurgeRun.Outcome.FAILED, ago=long_ago, error="boom")
    elif history == "a skipped run":
        recorded_run(PurgeRun.Outcome.SKIPPED, ago=long_ago)
    assert overdue_everywhere() == (False, "", False)
    assert manage("token_report").err == ""


def test_a_failed_latest_purge_after_a_stale_success_is_overdue_in_both(manage):
    make_tokens([utcnow() - timedelta(days=1)] * 2, user=None)
    recorded_run(ago=timedelta(days=20, hours=1))
    recorded_run(PurgeRun.Outcome.FAILED, ago=timedelta(hours=1), error="boom")
    assert overdue_everywhere() == (
        True,
        "Warning: no purge has succeeded for 20 days, and 2 tokens are purgeable. "
        "Is the scheduled purge still running?\n",
        True,
    )
    health = check_health(ReportRequest())
    assert (health.reason, health.attention) == ("failed", True)  # the failure comes first
    # Within PURGE_WARN_AFTER of the last success, neither is overdue.
    with override_settings(TOKENOPS={"PURGE_WARN_AFTER": "3w"}):
        assert overdue_everywhere() == (False, "", False)
