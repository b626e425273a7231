"""Reports and purge results as tables, JSON and CSV, rendered from values built here."""

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from django.utils import translation

from tests.utils import make_tokens, utcnow
from tokenops.counting import TableCounts, TokenCounts, UserTokens
from tokenops.cutoff import LEEWAY, OLDER_THAN, SLIDING, Cutoff
from tokenops.history import PurgeStatus
from tokenops.models import PurgeRun
from tokenops.operations import PurgeRequest, PurgeResult, Report, run_purge
from tokenops.purging import BatchStats, Deleted
from tokenops.rendering import (
    age_rows,
    cutoff_line,
    last_purge_line,
    overdue_warning,
    purge_dict,
    render_purge,
    render_report,
    report_dict,
    user_label,
)

NOW = datetime(2026, 1, 15, 12, 0, 5, tzinfo=timezone.utc)
CUTOFF = Cutoff(
    now=NOW,
    older_than=timedelta(days=7),
    leeway=timedelta(seconds=60),
    sliding_window=None,
    margin=timedelta(days=7),
    reason=OLDER_THAN,
)
COUNTS = TokenCounts(
    outstanding=TableCounts(7, 2, 5, 4, (2, 1, 1, 1)),
    blacklisted=TableCounts(3, 1, 2, 1, (2, 0, 0, 0)),
)
USERS = [UserTokens(1, "alice", 4), UserTokens(2, "bob", 2), UserTokens(None, None, 1)]
LAST_RUN = PurgeRun(
    started_at=NOW - timedelta(days=2),
    finished_at=NOW - timedelta(days=2) + timedelta(seconds=3),
    trigger=PurgeRun.Trigger.COMMAND,
    started_by="ops",
    outstanding_deleted=10,
    blacklisted_deleted=3,
)
HISTORY = PurgeStatus(True, "", LAST_RUN, False, LAST_RUN.finished_at, 4, NOW)
REPORT = Report("default", CUTOFF, COUNTS, USERS, HISTORY)
CUTOFF_LINE = (
    "Cutoff: tokens that expired at or before 2026-01-08 12:00:05 UTC are purgeable "
    "(set by --older-than; older-than 1w, LEEWAY 1m)."
)
RESULT = PurgeResult(
    dry_run=False,
    database="default",
    cutoff=CUTOFF,
    before=COUNTS,
    after=TokenCounts(
        outstanding=TableCounts(3, 2, 1, 0, (1, 0, 0, 0)),
        blacklisted=TableCounts(2, 1, 1, 0, (1, 0, 0, 0)),
    ),
    stats=BatchStats(Deleted(4, 1), batches=2, longest_transaction=0.123456),
    seconds=1.5,
    started_at=NOW,
)


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def test_report_table():
    assert render_report(REPORT, "table").splitlines() == [
        "Token report for database 'default' at 2026-01-15 12:00:05 UTC",
        CUTOFF_LINE,
        "",
        "tokens         total    active    expired    purgeable",
        "-----------  -------  --------  ---------  -----------",
        "outstanding        7         2          5            4",
        "blacklisted        3         1          2            1",
        "",
        "Expired tokens by time since expiry",
        "expired      outstanding    blacklisted",
        "---------  -------------  -------------",
        "< 1 day                2              2",
        "1-7 days               1              0",
        "7-30 days              1              0",
        "> 30 days              1              0",
        "",
        "Top 3 users by outstanding tokens",
        "user              tokens",
        "--------------  --------",
        "alice                  4",
        "bob                    2",
        "(deleted user)         1",
        "",
        "Last successful purge: 2026-01-13 12:00:08 UTC (command, ops), 10 outstanding and "
        "3 blacklisted tokens deleted.",
    ]


def test_report_table_without_users_or_history_ends_with_the_buckets():
    text = render_report(replace(REPORT, top_users=[], history=None), "table")
    assert text.splitlines()[-6:] == [
        "expired      outstanding    blacklisted",
        "---------  -------------  -------------",
        "< 1 day                2              2",
        "1-7 days               1              0",
        "7-30 days              1              0",
        "> 30 days              1              0",
    ]
    assert "users by outstanding tokens" not in text
    assert "Last successful purge" not in text


REPORT_DICT = {
    "database": "default",
    "generated_at": "2026-01-15T12:00:05+00:00",
    "cutoff": "2026-01-08T12:00:05+00:00",
    "cutoff_reason": "older-than",
    "older_than_seconds": 604800,
    "leeway_seconds": 60.0,
    "sliding_window_seconds": None,
    "outstanding": {"total": 7, "active": 2, "expired": 5, "purgeable": 4},
    "blacklisted": {"total": 3, "active": 1, "expired": 2, "purgeable": 1},
    "expired_by_age": [
        {"age": "< 1 day", "outstanding": 2, "blacklisted": 2},
        {"age": "1-7 days", "outstanding": 1, "blacklisted": 0},
        {"age": "7-30 days", "outstanding": 1, "blacklisted": 0},
        {"age": "> 30 days", "outstanding": 1, "blacklisted": 0},
    ],
    "top_users": [
        {"user_id": 1, "username": "alice", "tokens": 4},
        {"user_id": 2, "username": "bob", "tokens": 2},
        {"user_id": None, "username": None, "tokens": 1},
    ],
    "last_purge": {
        "started_at": "2026-01-13T12:00:05+00:00",
        "finished_at": "2026-01-13T12:00:08+00:00",
        "trigger": "command",
        "started_by": "ops",
        "deleted": {"outstanding": 10, "blacklisted": 3},
    },
    "purge_overdue": False,
}


def test_report_json():
    assert report_dict(REPORT) == REPORT_DICT
    assert json.loads(render_report(REPORT, "json")) == REPORT_DICT


def test_report_json_without_history_has_no_purge_keys():
    data = json.loads(render_report(replace(REPORT, history=None), "json"))
    assert data == {
        key: value
        for key, value in REPORT_DICT.items()
        if key not in ("last_purge", "purge_overdue")
    }


def test_report_json_without_a_successful_purge():
    status = replace(HISTORY, last_success=None, overdue=True)
    data = report_dict(replace(REPORT, history=status))
    assert (data["last_purge"], data["purge_overdue"]) == (None, True)


def test_json_escapes_what_a_console_cannot_encode():
    text = render_report(replace(REPORT, top_users=[UserTokens(5, "Jürgen-Иван-😀", 1)]), "json")
    assert text.isascii()
    assert json.loads(text)["top_users"][0]["username"] == "Jürgen-Иван-😀"


def test_report_csv():
    assert render_report(REPORT, "csv") == (
        "tokens,total,active,expired,purgeable\noutstanding,7,2,5,4\nblacklisted,3,1,2,1"
    )


def test_purge_table():
    assert render_purge(RESULT, "table").splitlines() == [
        "Deleted 4 outstanding and 1 blacklisted tokens from database 'default' in 1.50 s "
        "(2 batches, longest transaction 0.12 s).",
        CUTOFF_LINE,
        "",
        "tokens         before    purgeable    deleted    after",
        "-----------  --------  -----------  ---------  -------",
        "outstanding         7            4          4        3",
        "blacklisted         3            1          1        2",
    ]


def test_dry_run_table_says_what_would_go():
    dry = replace(RESULT, dry_run=True, after=COUNTS, stats=BatchStats())
    lines = render_purge(dry, "table").splitlines()
    assert lines[0] == (
        "Dry run: nothing was deleted. Would delete 4 outstanding and 1 blacklisted tokens "
        "from database 'default'."
    )
    assert lines[5:] == [
        "outstanding         7            4          0        7",
        "blacklisted         3            1          0        3",
    ]


PURGE_DICT = {
    "dry_run": False,
    "database": "default",
    "cutoff": "2026-01-08T12:00:05+00:00",
    "cutoff_reason": "older-than",
    "older_than_seconds": 604800,
    "leeway_seconds": 60.0,
    "sliding_window_seconds": None,
    "before": {"outstanding": 7, "blacklisted": 3},
    "purgeable": {"outstanding": 4, "blacklisted": 1},
    "deleted": {"outstanding": 4, "blacklisted": 1},
    "after": {"outstanding": 3, "blacklisted": 2},
    "batches": 2,
    "longest_transaction_seconds": 0.1235,
    "seconds": 1.5,
}


def test_purge_json():
    assert purge_dict(RESULT) == PURGE_DICT
    assert json.loads(render_purge(RESULT, "json")) == PURGE_DICT


@pytest.mark.django_db
def test_a_real_purge_renders_its_own_numbers():
    now = utcnow()
    make_tokens([now - timedelta(days=2)] * 3, blacklisted=[True, False, False])
    make_tokens([now + timedelta(days=2)] * 2, blacklisted=True)
    result = run_purge(PurgeRequest("default", older_than=timedelta(days=1)))
    lines = render_purge(result, "table").splitlines()
    assert lines[0].startswith(
        "Deleted 3 outstanding and 1 blacklisted tokens from database 'default' in "
    )
    assert lines[5:] == [
        "outstanding         5            3          3        2",
        "blacklisted         3            1          1        2",
    ]


def test_cutoff_line_names_the_sliding_window():
    cutoff = replace(
        CUTOFF,
        sliding_window=timedelta(days=1, seconds=20),
        margin=timedelta(days=1, seconds=20),
        older_than=timedelta(hours=1),
        leeway=timedelta(seconds=10),
        reason=SLIDING,
    )
    assert cutoff_line(cutoff) == (
        "Cutoff: tokens that expired at or before 2026-01-14 11:59:45 UTC are purgeable "
        "(set by sliding window; older-than 1h, LEEWAY 10s, sliding window 1d20s)."
    )


def test_cutoff_line_names_leeway():
    cutoff = replace(CUTOFF, older_than=timedelta(0), margin=timedelta(seconds=60), reason=LEEWAY)
    assert cutoff_line(cutoff) == (
        "Cutoff: tokens that expired at or before 2026-01-15 11:59:05 UTC are purgeable "
        "(set by LEEWAY; older-than 0m, LEEWAY 1m)."
    )


def test_age_rows_and_user_label():
    assert age_rows(COUNTS) == [
        ("< 1 day", 2, 2),
        ("1-7 days", 1, 0),
        ("7-30 days", 1, 0),
        ("> 30 days", 1, 0),
    ]
    assert (user_label("bob"), user_label(""), user_label(None)) == ("bob", "", "(deleted user)")


def test_last_purge_line_when_the_history_tells_nothing():
    unreadable = PurgeStatus(False, "no such table: tokenops_purgerun", None, False, None, 4, NOW)
    assert last_purge_line(unreadable) == (
        "Last successful purge: unknown (the purge history cannot be read: "
        "no such table: tokenops_purgerun)"
    )
    assert last_purge_line(replace(HISTORY, last_success=None)) == (
        "Last successful purge: none recorded."
    )
    nobody = PurgeRun(
        started_at=LAST_RUN.started_at,
        trigger=PurgeRun.Trigger.TASK,
        outstanding_deleted=10,
        blacklisted_deleted=3,
    )
    assert last_purge_line(replace(HISTORY, last_success=nobody)) == (
        "Last successful purge: 2026-01-13 12:00:05 UTC (Celery task), 10 outstanding and "
        "3 blacklisted tokens deleted."
    )


def test_overdue_warnings():
    late = replace(HISTORY, overdue=True, since=NOW - timedelta(days=20, hours=1))
    assert overdue_warning(late) == (
        "Warning: no purge has succeeded for 20 days, and 4 tokens are purgeable. "
        "Is the scheduled purge still running?"
    )
    assert overdue_warning(replace(late, last_success=None)) == (
        "Warning: no purge has succeeded since the purge history began 20 days ago, and "
        "4 tokens are purgeable. Is the scheduled purge running?"
    )


def test_tables_are_translated_but_json_and_csv_are_not():
    with translation.override("ru"):
        table = render_report(REPORT, "table")
        data = render_report(REPORT, "json")
        csv_text = render_report(REPORT, "csv")
    assert "всего" in table
    assert "< 1 дня" in table
    assert json.loads(data) == REPORT_DICT
    assert csv_text == render_report(REPORT, "csv")
