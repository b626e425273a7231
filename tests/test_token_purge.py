"""token_purge, the command: output, dry run, exit codes, options, settings, the command line."""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, connections
from django.test import modify_settings, override_settings
from django.utils import timezone as dj_timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import (
    make_orphans,
    make_tokens,
    orphan_blacklist_rows,
    project_env,
    run_manage,
    snapshot,
    sqlite_url,
    utcnow,
)

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)
# Only in the sqlite run: these tests make their own databases, so one run is enough.
own_databases = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="own databases; runs once, in the sqlite run"
)


def keys(tokens: list[OutstandingToken]) -> list[int]:
    return [token.pk for token in tokens]


def population(using: str = "default") -> dict[str, list[int]]:
    """Expired and live rows, blacklisted or not, for a user and for a deleted user."""
    now = utcnow()
    user, _ = get_user_model()._default_manager.db_manager(using).get_or_create(username="bob")

    def rows(expiries: list[datetime], blacklisted: bool = False) -> list[int]:
        return keys(make_tokens(expiries, blacklisted=blacklisted, user=user, using=using))

    return {
        "expired": rows([now - 3 * DAY, now - 2 * DAY]),
        "expired_black": rows([now - 10 * DAY], blacklisted=True),
        "live": rows([now + DAY, now + 2 * DAY]),
        "live_black": rows([now + 3 * DAY], blacklisted=True),
    }


def pks(using: str = "default") -> set[int]:
    return set(OutstandingToken.objects.using(using).values_list("pk", flat=True))


def test_table_output_deletes_only_purgeable_rows(manage):
    rows = population()
    result = manage("token_purge")
    assert result.code == 0, result.err
    assert result.err == ""
    lines = result.out.splitlines()
    assert re.fullmatch(
        r"Deleted 3 outstanding tokens and 1 blacklisted token from database 'default' in "
        r"\d+\.\d\d s \((1 batch|[02-9] batches|\d\d+ batches), "
        r"longest transaction \d+\.\d\d s\)\.",
        lines[0],
    ), lines[0]
    assert lines[1].startswith("Cutoff: tokens that expired at or before ")
    assert lines[1].endswith(
        " UTC are purgeable (set by TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m)."
    )
    assert lines[3].split() == ["tokens", "before", "purgeable", "deleted", "after"]
    assert lines[5].split() == ["outstanding", "6", "3", "3", "3"]
    assert lines[6].split() == ["blacklisted", "2", "1", "1", "1"]
    assert pks() == set(rows["live"] + rows["live_black"])
    assert list(BlacklistedToken.objects.values_list("token_id", flat=True)) == rows["live_black"]


def test_json_output(manage):
    population()
    result = manage("token_purge", "--format", "json", "--older-than", "5d")
    assert result.code == 0, result.err
    assert result.err == ""
    data = json.loads(result.out)
    assert data["dry_run"] is False
    assert data["database"] == "default"
    assert data["cutoff_reason"] == "older-than"
    assert data["older_than_seconds"] == 5 * 86400
    assert data["older_than_source"] == "option"
    cutoff = datetime.fromisoformat(data["cutoff"])
    assert abs(cutoff - (utcnow() - 5 * DAY)) < timedelta(minutes=1)
    assert data["before"] == {"outstanding": 6, "blacklisted": 2}
    assert data["purgeable"] == {"outstanding": 1, "blacklisted": 1}
    assert data["deleted"] == {"outstanding": 1, "blacklisted": 1}
    assert data["after"] == {"outstanding": 5, "blacklisted": 1}
    assert isinstance(data["seconds"], float)
    assert OutstandingToken.objects.count() == 5


def test_dry_run_says_so_and_writes_nothing(manage):
    population()
    before = snapshot()
    result = manage("token_purge", "--dry-run")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        "Dry run: nothing was deleted. Would delete 3 outstanding tokens and 1 blacklisted "
        "token from database 'default'."
    )
    assert snapshot() == before

    data = json.loads(manage("token_purge", "--dry-run", "--format", "json").out)
    assert data["dry_run"] is True
    assert data["purgeable"] == {"outstanding": 3, "blacklisted": 1}
    assert data["deleted"] == {"outstanding": 0, "blacklisted": 0}
    assert data["after"] == data["before"] == {"outstanding": 6, "blacklisted": 2}
    assert snapshot() == before


@pytest.mark.skipif(connection.vendor != "sqlite", reason="file-level check is SQLite's")
def test_dry_run_writes_only_its_history_row(manage):
    population()
    connections["default"].close()
    path = Path(connections["default"].settings_dict["NAME"])
    watcher = sqlite3.connect(path)

    def dump() -> list[str]:
        # sqlite_sequence is AUTOINCREMENT bookkeeping; the rows are what matters.
        return [line for line in watcher.iterdump() if '"sqlite_sequence"' not in line]

    before = dump()
    result = manage("token_purge", "--dry-run", "--format", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["purgeable"]["outstanding"] == 3

    after = dump()
    added = [line for line in after if line not in before]
    assert [line for line in before if line not in after] == []
    assert len(added) == 1
    assert added[0].startswith('INSERT INTO "tokenops_purgerun" VALUES(')
    # The watcher does see a real purge: the check above could fail.
    assert manage("token_purge").code == 0
    assert [line for line in before if line not in dump()] != []
    watcher.close()


DURATION_HINT = "use a whole number and a unit (m, h, d, w), for example 30m, 12h, 7d, 2w or 1w2d."
BAD_ARGUMENTS = [
    (
        ["--older-than", "abc"],
        f"argument --older-than: Invalid duration 'abc': {DURATION_HINT}",
    ),
    (
        ["--older-than=-1d"],
        f"argument --older-than: Invalid duration '-1d': {DURATION_HINT}",
    ),
    (["--older-than", "7"], f"argument --older-than: Invalid duration '7': {DURATION_HINT}"),
    (["--older-than", "1.5d"], f"argument --older-than: Invalid duration '1.5d': {DURATION_HINT}"),
    (
        ["--older-than", "11000d"],
        "argument --older-than: Duration '11000d' is too large (at most 10 years).",
    ),
    (
        ["--batch-size", "0"],
        "argument --batch-size: expected a whole number from 1 to 10000000, got '0'",
    ),
    (
        ["--batch-size", "-5"],
        "argument --batch-size: expected a whole number from 1 to 10000000, got '-5'",
    ),
    (
        ["--batch-size", "ten"],
        "argument --batch-size: expected a whole number from 1 to 10000000, got 'ten'",
    ),
    (
        ["--format", "xml"],
        "argument --format: invalid choice: 'xml' (choose from 'table', 'json')",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_and_touch_nothing(manage, args, message):
    population()
    before = snapshot()
    result = manage("token_purge", *args)
    assert (result.code, result.out) == (2, "")
    assert result.err == f"manage.py token_purge: error: {message}\n"
    assert snapshot() == before


def test_an_unknown_database_alias_is_a_usage_error(manage):
    population()
    before = snapshot()
    result = manage("token_purge", "--database", "nope")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "manage.py token_purge: error: argument --database: Unknown database alias 'nope' "
        "(configured: default, secondary).\n"
    )
    assert snapshot() == before


def test_bad_older_than_setting(manage):
    population()
    before = snapshot()
    with override_settings(TOKENOPS={"OLDER_THAN": "a week"}):
        result = manage("token_purge")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"CommandError: TOKENOPS['OLDER_THAN']: Invalid duration 'a week': {DURATION_HINT}\n"
    )
    assert snapshot() == before


def test_missing_blacklist_app(manage):
    population()
    before = snapshot()
    with modify_settings(INSTALLED_APPS={"remove": ["rest_framework_simplejwt.token_blacklist"]}):
        result = manage("token_purge")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "CommandError: 'rest_framework_simplejwt.token_blacklist' is not in INSTALLED_APPS: "
        "tokenops works on simplejwt's token blacklist tables; add the app and run "
        "'python manage.py migrate'.\n"
    )
    assert snapshot() == before


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
def test_database_option_purges_only_that_database(manage):
    population("default")
    on_secondary = population("secondary")
    before_default = snapshot("default")
    result = manage("token_purge", "--database", "secondary", "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["database"] == "secondary"
    assert data["deleted"] == {"outstanding": 3, "blacklisted": 1}
    assert snapshot("default") == before_default
    assert pks("secondary") == set(on_secondary["live"] + on_secondary["live_black"])


def test_one_info_line_per_run(caplog):
    # call_command: manage.py's django.setup() would re-apply LOGGING over caplog's level.
    population()
    caplog.set_level(logging.INFO, logger="tokenops")
    call_command("token_purge", "--dry-run", stdout=io.StringIO())
    call_command("token_purge", "--older-than", "1h", stdout=io.StringIO())
    records = [r for r in caplog.records if r.name == "tokenops"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    dry, real = (r.getMessage() for r in records)
    assert re.fullmatch(
        r"token purge \(dry run\) on 'default': cutoff \S+ \(older-than\), 3 outstanding and "
        r"1 blacklisted rows would be deleted in \d+\.\d\d s",
        dry,
    ), dry
    assert re.fullmatch(
        r"token purge on 'default': cutoff \S+ \(older-than\), 3 outstanding and "
        r"1 blacklisted rows deleted in \d+\.\d\d s",
        real,
    ), real


def test_use_tz_false_compares_in_utc_not_local_time(manage):
    """simplejwt stores naive UTC with USE_TZ=False; Moscow local time is 3 h ahead."""
    with override_settings(USE_TZ=False, TIME_ZONE="Europe/Moscow"):
        now = datetime.now(UTC)
        expired = keys(make_tokens([now - timedelta(hours=2)], blacklisted=True, user=None))
        live = keys(make_tokens([now + timedelta(hours=1)], blacklisted=True, user=None))
        stored_live = OutstandingToken.objects.get(pk=live[0]).expires_at
        assert stored_live.tzinfo is None
        # The trap: naive local "now" is later than the live row's naive UTC expiry.
        assert stored_live < dj_timezone.now()
        result = manage("token_purge", "--format", "json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["deleted"] == {"outstanding": 1, "blacklisted": 1}
        assert pks() == set(live)
        assert BlacklistedToken.objects.filter(token_id=live[0]).exists()
        assert not set(expired) & pks()


def test_leeway_from_settings_keeps_tokens_it_still_accepts(manage):
    now = utcnow()
    kept = keys(make_tokens([now - timedelta(minutes=30)], blacklisted=True, user=None))
    gone = keys(make_tokens([now - timedelta(hours=2)], blacklisted=True, user=None))
    with override_settings(SIMPLE_JWT={"LEEWAY": 3600}):
        result = manage("token_purge", "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["cutoff_reason"], data["leeway_seconds"]) == ("LEEWAY", 3600.0)
    assert data["older_than_source"] == "setting"
    assert pks() == set(kept)
    assert not set(gone) & pks()


def test_sliding_tokens_widen_the_cutoff(manage):
    now = utcnow()
    kept = keys(make_tokens([now - timedelta(hours=20)], blacklisted=True, user=None))
    gone = keys(make_tokens([now - timedelta(hours=30)], blacklisted=True, user=None))
    jwt = {"AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.SlidingToken",)}
    with override_settings(SIMPLE_JWT=jwt):
        result = manage("token_purge", "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["cutoff_reason"], data["sliding_window_seconds"]) == ("sliding window", 86400.0)
    assert pks() == set(kept)
    assert not set(gone) & pks()


SLIDING_JWT = {"AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.SlidingToken",)}
CUTOFF_LINE = re.compile(
    r"Cutoff: tokens that expired at or before \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC are "
    r"purgeable \(set by (?P<setter>.+?); (?P<detail>.+)\)\."
)


@pytest.mark.parametrize(
    ("args", "settings", "setter", "detail", "source"),
    [
        (["--older-than", "5d"], {}, "--older-than", "--older-than 5d, LEEWAY 0m", "option"),
        # An explicit 0 is asked for: it beats TOKENOPS["OLDER_THAN"] and is named as asked.
        (
            ["--older-than", "0m"],
            {"TOKENOPS": {"OLDER_THAN": "3d"}},
            "--older-than",
            "--older-than 0m, LEEWAY 0m",
            "option",
        ),
        (
            [],
            {"TOKENOPS": {"OLDER_THAN": "2d"}},
            "TOKENOPS['OLDER_THAN']",
            "TOKENOPS['OLDER_THAN'] 2d, LEEWAY 0m",
            "setting",
        ),
        ([], {}, "TOKENOPS['OLDER_THAN']", "TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m", "setting"),
        (
            [],
            {"SIMPLE_JWT": {"LEEWAY": 3600}},
            "LEEWAY",
            "TOKENOPS['OLDER_THAN'] 0m, LEEWAY 1h",
            "setting",
        ),
        (
            ["--older-than", "30m"],
            {"SIMPLE_JWT": {"LEEWAY": 3600}},
            "LEEWAY",
            "--older-than 30m, LEEWAY 1h",
            "option",
        ),
        (
            [],
            {"SIMPLE_JWT": SLIDING_JWT},
            "the sliding window",
            "TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m, sliding window 1d",
            "setting",
        ),
        (
            ["--older-than", "2h"],
            {"SIMPLE_JWT": SLIDING_JWT},
            "the sliding window",
            "--older-than 2h, LEEWAY 0m, sliding window 1d",
            "option",
        ),
    ],
)
def test_cutoff_line_names_where_the_margin_came_from(
    manage, args, settings, setter, detail, source
):
    population()
    with override_settings(**settings):
        table = manage("token_purge", "--dry-run", *args)
        data = json.loads(manage("token_purge", "--dry-run", "--format", "json", *args).out)
    assert (table.code, table.err) == (0, "")
    match = CUTOFF_LINE.fullmatch(table.out.splitlines()[1])
    assert match, table.out
    assert (match["setter"], match["detail"]) == (setter, detail)
    assert data["older_than_source"] == source
    assert (
        data["cutoff_reason"]
        == {
            "--older-than": "older-than",
            "TOKENOPS['OLDER_THAN']": "older-than",
            "LEEWAY": "LEEWAY",
            "the sliding window": "sliding window",
        }[setter]
    )


def headline(result) -> str:
    assert (result.code, result.err) == (0, ""), result.err
    first = result.out.splitlines()[0]
    # Times vary from run to run; the words and counts do not.
    return re.sub(r"\d+\.\d\d s", "T s", first)


def test_counts_are_singular_or_plural_in_english(manage):
    make_tokens([utcnow() - DAY], user=None)
    assert headline(manage("token_purge")) == (
        "Deleted 1 outstanding token and 0 blacklisted tokens from database 'default' in T s "
        "(1 batch, longest transaction T s)."
    )
    make_tokens([utcnow() - DAY] * 5, blacklisted=[True, True, False, False, False], user=None)
    assert headline(manage("token_purge", "--dry-run")) == (
        "Dry run: nothing was deleted. Would delete 5 outstanding tokens and 2 blacklisted "
        "tokens from database 'default'."
    )
    assert headline(manage("token_purge", "--batch-size", "3")) == (
        "Deleted 5 outstanding tokens and 2 blacklisted tokens from database 'default' in T s "
        "(2 batches, longest transaction T s)."
    )
    make_tokens([utcnow() - DAY], blacklisted=True, user=None)
    assert headline(manage("token_purge", "--dry-run")) == (
        "Dry run: nothing was deleted. Would delete 1 outstanding token and 1 blacklisted "
        "token from database 'default'."
    )


def test_tokens_of_deleted_users_go_by_expiry_only(manage):
    now = utcnow()
    user = get_user_model()._default_manager.create(username="carol")
    expired = keys(make_tokens([now - DAY, now - 2 * DAY], blacklisted=[True, False], user=user))
    live = keys(make_tokens([now + DAY, now + 2 * DAY], blacklisted=[True, False], user=user))
    user.delete()
    assert OutstandingToken.objects.filter(user__isnull=True).count() == 4
    result = manage("token_purge", "--format", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["deleted"] == {"outstanding": 2, "blacklisted": 1}
    assert pks() == set(live)
    assert not set(expired) & pks()
    assert orphan_blacklist_rows() == 0


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "args", "bar"),
    [
        (False, [], False),
        (True, [], True),
        (True, ["--no-progress"], False),
        (True, ["--verbosity", "0"], False),
    ],
)
def test_progress_bar_only_on_a_terminal(tty, args, bar):
    # call_command: run_command's stderr is a StringIO of its own, never a terminal.
    make_tokens([utcnow() - DAY] * 50, user=None)
    stderr = FakeTerminal() if tty else io.StringIO()
    out = io.StringIO()
    call_command("token_purge", "--batch-size", "10", *args, stdout=out, stderr=stderr)
    drawn = stderr.getvalue()
    assert ("/50 [" in drawn and "rows/s" in drawn) is bar, drawn
    # Without a bar, stderr stays empty; with one, the bar is all there is.
    assert not drawn or bar
    if bar:
        # leave=False: the bar erases itself and leaves the terminal clean for the summary.
        assert drawn.endswith("\r"), drawn
    assert "Warning" not in drawn
    if "--verbosity" in args:
        assert out.getvalue() == ""
    else:
        assert out.getvalue().startswith("Deleted 50 outstanding")
    assert OutstandingToken.objects.count() == 0


# As a real process: the errors a scheduler's log sees are one line, with no traceback.


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT name FROM sqlite_master")]


@pytest.mark.slow
@own_databases
def test_unmigrated_database(tmp_path):
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    done = run_manage("token_purge", env=project_env(sqlite_url(path)))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "CommandError: Table token_blacklist_outstandingtoken does not exist in database "
        "'default': run 'python manage.py migrate --database default'.\n"
    )
    assert tables(path) == []


@pytest.mark.slow
@own_databases
def test_bad_batch_size_from_the_command_line(tmp_path):
    path = tmp_path / "app.sqlite3"
    env = project_env(sqlite_url(path))
    assert run_manage("migrate", "-v0", env=env).returncode == 0
    before = path.read_bytes()
    done = run_manage("token_purge", "--batch-size", "0", env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "manage.py token_purge: error: argument --batch-size: expected a whole number from "
        "1 to 10000000, got '0'\n"
    )
    assert path.read_bytes() == before


@pytest.mark.slow
@own_databases
def test_unreachable_server():
    done = run_manage("token_purge", env=project_env("postgres://postgres@127.0.0.1:1/nowhere"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("CommandError: Cannot reach database 'default': ")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


ORPHANS_NOTE = (
    "orphaned: blacklist rows whose outstanding token row is gone; they blacklist nothing, "
    "and a purge deletes them."
)


def test_orphan_blacklist_rows_are_purged_and_shown(manage):
    population()
    make_orphans(make_tokens([utcnow() + DAY] * 3, blacklisted=True, user=None))

    dry = manage("token_purge", "--dry-run")
    assert (dry.code, dry.err) == (0, "")
    assert dry.out.splitlines()[5:] == [
        "outstanding         6            3          0        6",
        "blacklisted         2            1          0        2",
        "orphaned            3            3          0        3",
        ORPHANS_NOTE,
    ]
    assert orphan_blacklist_rows() == 3

    result = manage("token_purge", "--format", "json")
    assert (result.code, result.err) == (0, "")
    data = json.loads(result.out)
    assert data["orphaned_blacklisted"] == {"before": 3, "deleted": 3, "after": 0}
    assert data["deleted"] == {"outstanding": 3, "blacklisted": 1}
    assert orphan_blacklist_rows() == 0
    assert BlacklistedToken.objects.count() == 1
