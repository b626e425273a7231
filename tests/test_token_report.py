"""The token_report command: options, formats and databases, as a user runs it."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from my_bathhouse_backend.settings import SIMPLE_JWT
from tests.utils import delete_user_keeping_tokens, make_orphans, make_tokens, utcnow

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "secondary"])


def report(manage, *args):
    result = manage("token_report", "--format", "json", *args)
    assert (result.code, result.err) == (0, "")
    return json.loads(result.out)


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
    assert (result.code, result.err) == (0, "")
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
    assert (result.code, result.err) == (0, "")
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
