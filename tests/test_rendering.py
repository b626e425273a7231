"""Reports and purge results as tables, JSON and CSV, rendered from values built here."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import translation

from tests.utils import make_tokens, utcnow
from tokenops.counting import TableCounts, TokenCounts, UserTokens
from tokenops.cutoff import FROM_OPTION, FROM_SETTING, LEEWAY, OLDER_THAN, SLIDING, Cutoff
from tokenops.models import PurgeRun
from tokenops.operations import Health, PurgeRequest, PurgeResult, PurgeStatus, Report, run_purge
from tokenops.purging import BatchStats, Deleted
from tokenops.rendering import (
    age_rows,
    check_line,
    cutoff_line,
    last_purge_line,
    overdue_warning,
    printable,
    purge_dict,
    purge_headline,
    render_purge,
    render_report,
    report_dict,
    user_label,
)

NOW = datetime(2026, 1, 15, 12, 0, 5, tzinfo=UTC)
CUTOFF = Cutoff(
    now=NOW,
    older_than=timedelta(days=7),
    older_than_source=FROM_OPTION,
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
HISTORY = PurgeStatus(True, "", LAST_RUN, False, LAST_RUN.finished_at, 4, NOW, timedelta(days=14))
REPORT = Report("default", CUTOFF, COUNTS, USERS, HISTORY)
CUTOFF_LINE = (
    "Cutoff: tokens that expired at or before 2026-01-08 12:00:05 UTC are purgeable "
    "(set by --older-than; --older-than 1w, LEEWAY 1m)."
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
        "Last successful purge: 2026-01-13 12:00:08 UTC (command, ops), 10 outstanding tokens "
        "and 3 blacklisted tokens deleted.",
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
    "older_than_source": "option",
    "leeway_seconds": 60.0,
    "sliding_window_seconds": None,
    "outstanding": {"total": 7, "active": 2, "expired": 5, "purgeable": 4},
    "blacklisted": {"total": 3, "active": 1, "expired": 2, "purgeable": 1},
    "orphaned_blacklisted": 0,
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
        "Deleted 4 outstanding tokens and 1 blacklisted token from database 'default' in "
        "1.50 s (2 batches, longest transaction 0.12 s).",
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
        "Dry run: nothing was deleted. Would delete 4 outstanding tokens and 1 blacklisted "
        "token from database 'default'."
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
    "older_than_source": "option",
    "leeway_seconds": 60.0,
    "sliding_window_seconds": None,
    "before": {"outstanding": 7, "blacklisted": 3},
    "purgeable": {"outstanding": 4, "blacklisted": 1},
    "deleted": {"outstanding": 4, "blacklisted": 1},
    "after": {"outstanding": 3, "blacklisted": 2},
    "orphaned_blacklisted": {"before": 0, "deleted": 0, "after": 0},
    "batches": 2,
    "longest_transaction_seconds": 0.1235,
    "seconds": 1.5,
    "complete": True,
    "remaining": {"outstanding": 0, "blacklisted": 0},
    "max_seconds": None,
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
        "Deleted 3 outstanding tokens and 1 blacklisted token from database 'default' in "
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
        "(set by the sliding window; --older-than 1h, LEEWAY 10s, sliding window 1d20s)."
    )


def test_cutoff_line_names_leeway():
    cutoff = replace(
        CUTOFF,
        older_than=timedelta(0),
        older_than_source=FROM_SETTING,
        margin=timedelta(seconds=60),
        reason=LEEWAY,
    )
    assert cutoff_line(cutoff) == (
        "Cutoff: tokens that expired at or before 2026-01-15 11:59:05 UTC are purgeable "
        "(set by LEEWAY; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 1m)."
    )


def test_cutoff_line_names_the_setting_when_no_older_than_was_given():
    cutoff = replace(CUTOFF, older_than_source=FROM_SETTING)
    assert cutoff_line(cutoff) == (
        "Cutoff: tokens that expired at or before 2026-01-08 12:00:05 UTC are purgeable "
        "(set by TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 1w, LEEWAY 1m)."
    )
    assert report_dict(replace(REPORT, cutoff=cutoff))["older_than_source"] == "setting"
    assert purge_dict(replace(RESULT, cutoff=cutoff))["cutoff_reason"] == "older-than"


def test_cutoff_line_in_russian_names_every_source():
    sliding = replace(
        CUTOFF, sliding_window=timedelta(days=2), margin=timedelta(days=2), reason=SLIDING
    )
    with translation.override("ru"):
        lines = [
            cutoff_line(cutoff)
            for cutoff in (CUTOFF, replace(CUTOFF, older_than_source=FROM_SETTING), sliding)
        ]
    assert lines == [
        "Граница: можно удалить токены, истёкшие не позже 2026-01-08 12:00:05 UTC "
        "(её задаёт --older-than; --older-than 1w, LEEWAY 1m).",
        "Граница: можно удалить токены, истёкшие не позже 2026-01-08 12:00:05 UTC "
        "(её задаёт TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 1w, LEEWAY 1m).",
        "Граница: можно удалить токены, истёкшие не позже 2026-01-13 12:00:05 UTC "
        "(её задаёт скользящее окно; --older-than 1w, LEEWAY 1m, скользящее окно 2d).",
    ]


def test_age_rows_and_user_label():
    assert age_rows(COUNTS) == [
        ("< 1 day", 2, 2),
        ("1-7 days", 1, 0),
        ("7-30 days", 1, 0),
        ("> 30 days", 1, 0),
    ]
    assert (user_label("bob"), user_label(""), user_label(None)) == ("bob", "", "(deleted user)")


def test_last_purge_line_when_the_history_tells_nothing():
    unreadable = PurgeStatus(
        False, "no such table: tokenops_purgerun", None, False, None, 4, NOW, timedelta(days=14)
    )
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
        "Last successful purge: 2026-01-13 12:00:05 UTC (Celery task), 10 outstanding tokens "
        "and 3 blacklisted tokens deleted."
    )
    single = PurgeRun(
        started_at=LAST_RUN.started_at,
        finished_at=LAST_RUN.finished_at,
        trigger=PurgeRun.Trigger.COMMAND,
        outstanding_deleted=1,
        blacklisted_deleted=1,
    )
    assert last_purge_line(replace(HISTORY, last_success=single)) == (
        "Last successful purge: 2026-01-13 12:00:08 UTC (command), 1 outstanding token and "
        "1 blacklisted token deleted."
    )


def test_overdue_warnings():
    late = replace(HISTORY, overdue=True, since=NOW - timedelta(days=20, hours=1))
    assert overdue_warning(late) == (
        "Warning: no purge has succeeded for 20 days, and 4 tokens are purgeable. "
        "Is the scheduled purge still running?"
    )
    never = replace(late, last_success=None, since=None)
    assert overdue_warning(never) == (
        "Warning: no purge has ever succeeded, and 4 tokens are purgeable (the oldest "
        "expired more than 2w ago). Is the scheduled purge running?"
    )
    one = replace(late, since=NOW - timedelta(days=1, hours=1), purgeable=1)
    assert overdue_warning(one) == (
        "Warning: no purge has succeeded for 1 day, and 1 token is purgeable. "
        "Is the scheduled purge still running?"
    )
    assert overdue_warning(replace(never, purgeable=1, warn_after=timedelta(days=1))) == (
        "Warning: no purge has ever succeeded, and 1 token is purgeable (the oldest "
        "expired more than 1d ago). Is the scheduled purge running?"
    )


def counted(outstanding: int, blacklisted: int, batches: int) -> PurgeResult:
    """RESULT with these many rows deleted in these many batches."""
    return replace(
        RESULT,
        stats=replace(RESULT.stats, deleted=Deleted(outstanding, blacklisted), batches=batches),
    )


@pytest.mark.parametrize(
    ("numbers", "headline"),
    [
        (
            (1, 0, 1),
            "Deleted 1 outstanding token and 0 blacklisted tokens from database 'default' in "
            "1.50 s (1 batch, longest transaction 0.12 s).",
        ),
        (
            (5, 1, 2),
            "Deleted 5 outstanding tokens and 1 blacklisted token from database 'default' in "
            "1.50 s (2 batches, longest transaction 0.12 s).",
        ),
        (
            (0, 0, 0),
            "Deleted 0 outstanding tokens and 0 blacklisted tokens from database 'default' in "
            "1.50 s (0 batches, longest transaction 0.12 s).",
        ),
    ],
)
def test_purge_headline_singular_and_plural(numbers, headline):
    assert purge_headline(counted(*numbers)) == headline


def test_dry_run_headline_singular_and_plural():
    dry = replace(RESULT, dry_run=True, stats=BatchStats())
    one = TokenCounts(
        outstanding=replace(COUNTS.outstanding, purgeable=1),
        blacklisted=replace(COUNTS.blacklisted, purgeable=1),
    )
    assert purge_headline(replace(dry, before=one)) == (
        "Dry run: nothing was deleted. Would delete 1 outstanding token and 1 blacklisted "
        "token from database 'default'."
    )
    two = TokenCounts(
        outstanding=replace(COUNTS.outstanding, purgeable=2),
        blacklisted=replace(COUNTS.blacklisted, purgeable=0),
    )
    assert purge_headline(replace(dry, before=two)) == (
        "Dry run: nothing was deleted. Would delete 2 outstanding tokens and 0 blacklisted "
        "tokens from database 'default'."
    )


def test_top_users_heading_singular_and_plural():
    assert (
        "Top 1 user by outstanding tokens"
        in render_report(replace(REPORT, top_users=USERS[:1]), "table").splitlines()
    )
    assert (
        "Top 2 users by outstanding tokens"
        in render_report(replace(REPORT, top_users=USERS[:2]), "table").splitlines()
    )


# Russian has three forms: 1 (21, 101), 2-4 (22-24), 5-20 (0, 11-14, 25).
RUSSIAN = {
    1: (
        "1 выданный токен",
        "1 токен в чёрном списке",
        "1 пакет",
        "1 день",
        "1 токен",
        "1 пользователь",
    ),
    2: (
        "2 выданных токена",
        "2 токена в чёрном списке",
        "2 пакета",
        "2 дня",
        "2 токена",
        "2 пользователя",
    ),
    5: (
        "5 выданных токенов",
        "5 токенов в чёрном списке",
        "5 пакетов",
        "5 дней",
        "5 токенов",
        "5 пользователей",
    ),
    11: (
        "11 выданных токенов",
        "11 токенов в чёрном списке",
        "11 пакетов",
        "11 дней",
        "11 токенов",
        "11 пользователей",
    ),
    21: (
        "21 выданный токен",
        "21 токен в чёрном списке",
        "21 пакет",
        "21 день",
        "21 токен",
        "21 пользователь",
    ),
    22: (
        "22 выданных токена",
        "22 токена в чёрном списке",
        "22 пакета",
        "22 дня",
        "22 токена",
        "22 пользователя",
    ),
}


@pytest.mark.parametrize("n", RUSSIAN)
def test_russian_plural_forms(n):
    outstanding, blacklisted, batches, days, tokens, users = RUSSIAN[n]
    with translation.override("ru"):
        headline = purge_headline(counted(n, n, n))
        warning = overdue_warning(
            replace(HISTORY, overdue=True, since=NOW - timedelta(days=n), purgeable=n)
        )
        top = render_report(replace(REPORT, top_users=[USERS[0]] * n), "table").splitlines()
    assert headline == (
        f"Из базы данных 'default' удалено: {outstanding} и {blacklisted}, "
        "за 1.50 с "  # noqa: RUF001
        f"({batches}, самая долгая транзакция 0.12 с)."  # noqa: RUF001
    )
    assert warning == (
        f"Внимание: успешной очистки не было уже {days}, а {tokens} можно удалить. "  # noqa: RUF001
        "Работает ли ещё очистка по расписанию?"
    )
    assert f"{users} с наибольшим числом выданных токенов" in top  # noqa: RUF001


# Orphan blacklist rows: their own line, shown only when there are some.

ORPHANED_REPORT = replace(REPORT, counts=replace(COUNTS, orphans=12))
ORPHANS_NOTE = (
    "orphaned: blacklist rows whose outstanding token row is gone; they blacklist nothing, "
    "and a purge deletes them."
)


def test_report_table_has_an_orphan_line_when_there_are_some():
    assert render_report(ORPHANED_REPORT, "table").splitlines()[3:9] == [
        "tokens         total    active    expired    purgeable",
        "-----------  -------  --------  ---------  -----------",
        "outstanding        7         2          5            4",
        "blacklisted        3         1          2            1",
        "orphaned          12         -          -           12",
        ORPHANS_NOTE,
    ]


def test_report_json_and_csv_count_orphans():
    assert report_dict(ORPHANED_REPORT)["orphaned_blacklisted"] == 12
    assert render_report(ORPHANED_REPORT, "csv").splitlines()[-1] == "orphaned_blacklisted,12,,,12"


def test_purge_table_and_json_show_deleted_orphans():
    result = replace(
        RESULT,
        before=replace(COUNTS, orphans=5),
        stats=replace(RESULT.stats, deleted=Deleted(4, 1, orphans=5)),
    )
    assert render_purge(result, "table").splitlines()[5:] == [
        "outstanding         7            4          4        3",
        "blacklisted         3            1          1        2",
        "orphaned            5            5          5        0",
        ORPHANS_NOTE,
    ]
    assert purge_dict(result)["orphaned_blacklisted"] == {"before": 5, "deleted": 5, "after": 0}


# Control characters from data are made visible in tables and lines, never sent raw.

HOSTILE = "eve\x1b[2J\rroot      99\nmallory"


def test_printable_escapes_control_characters_only():
    assert printable(HOSTILE) == "eve\\x1b[2J\\rroot      99\\nmallory"
    assert printable("Jürgen\tIvan\u202egnp.exe\u2028") == ("Jürgen\\tIvan\\u202egnp.exe\\u2028")
    assert printable("DOMAIN\\ivan Ivan 😀") == "DOMAIN\\ivan Ivan 😀"


def test_a_hostile_user_name_is_one_escaped_row_in_the_table_and_exact_in_json_and_csv():
    report = replace(REPORT, top_users=[UserTokens(5, HOSTILE, 3)], history=None)
    table = render_report(report, "table")
    assert "\x1b" not in table and "\r" not in table
    assert table.splitlines()[-3:] == [
        "user                                 tokens",
        "---------------------------------  --------",
        "eve\\x1b[2J\\rroot      99\\nmallory         3",
    ]
    assert json.loads(render_report(report, "json"))["top_users"][0]["username"] == HOSTILE


def test_who_started_a_purge_and_its_error_are_escaped():
    run = PurgeRun(
        started_at=LAST_RUN.started_at,
        finished_at=LAST_RUN.finished_at,
        trigger=PurgeRun.Trigger.COMMAND,
        started_by="ops\x1b[31m\n",
        outstanding_deleted=10,
        blacklisted_deleted=3,
    )
    assert last_purge_line(replace(HISTORY, last_success=run)) == (
        "Last successful purge: 2026-01-13 12:00:08 UTC (command, ops\\x1b[31m\\n), "
        "10 outstanding tokens and 3 blacklisted tokens deleted."
    )
    failed = PurgeRun(
        started_at=NOW, trigger=PurgeRun.Trigger.COMMAND, outcome="failed", error="boom\r\x1b[K"
    )
    health = Health("default", "failed", NOW, failed, "failed", NOW, timedelta(days=14), False)
    assert check_line(health) == (
        "ATTENTION: the latest purge on database 'default', started at 2026-01-15 12:00:05 "
        "UTC, failed: boom\\r\\x1b[K"
    )
