"""Every bad input: one line on stderr, a non-zero exit, no traceback, nothing written."""

import pytest
from django.db import OperationalError

from tests.utils import project_env, run_manage, sqlite_url
from tokenops.errors import (
    TokenopsError,
    cut,
    database_error,
    first_line,
    shown,
    unknown_alias,
    unreachable,
)
from tokenops.models import PurgeRun

COMMANDS = ["token_report", "token_purge"]
MIGRATE_HINT = "run 'python manage.py migrate --database default'."


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--older-than", "5x"],
            "argument --older-than: Invalid duration '5x': use a whole number and a unit "
            "(m, h, d, w), for example 30m, 12h, 7d, 2w or 1w2d.",
        ),
        (["--older-than=-1d"], "argument --older-than: Invalid duration '-1d'"),
        (["--older-than", "9999w"], "argument --older-than: Duration '9999w' is too large"),
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(manage, command, args, message):
    result = manage(command, *args)
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith(f"manage.py {command}: error: {message}")
    assert result.err.count("\n") == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", [*COMMANDS, "token_schedule_hint"])
def test_an_unknown_database_alias_is_a_usage_error_with_exit_2(manage, command):
    result = manage(command, "--database", "nope")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"manage.py {command}: error: argument --database: Unknown database alias 'nope' "
        "(configured: default, secondary).\n"
    )
    assert not PurgeRun.objects.exists()


LONG = "7" * 10_000
CUT = "7" * 40


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        (
            "token_purge",
            ["--older-than", LONG + "d"],
            f"argument --older-than: Duration '{CUT}'... is too large (at most 10 years).",
        ),
        (
            "token_report",
            ["--older-than", "x" * 10_000],
            f"argument --older-than: Invalid duration '{'x' * 40}'...: use a whole number and "
            "a unit (m, h, d, w), for example 30m, 12h, 7d, 2w or 1w2d.",
        ),
        (
            "token_purge",
            ["--batch-size", LONG],
            f"argument --batch-size: expected a whole number from 1 to 10000000, got '{CUT}'...",
        ),
        (
            "token_purge",
            ["--max-seconds", "y" * 10_000],
            f"argument --max-seconds: expected a number of seconds above 0, got '{'y' * 40}'...",
        ),
        (
            "token_report",
            ["--format", "z" * 10_000],
            f"argument --format: invalid choice: '{'z' * 40}'... (choose from 'table', "
            "'json', 'csv', 'openmetrics')",
        ),
        (
            "token_purge",
            ["--database", "d" * 10_000],
            f"argument --database: Unknown database alias '{'d' * 40}'... (configured: "
            "default, secondary).",
        ),
        ("token_report", ["w" * 10_000], f"unrecognized arguments: {'w' * 40}..."),
    ],
)
def test_echoed_input_is_cut(manage, command, args, message):
    result = manage(command, *args)
    assert (result.code, result.out) == (2, "")
    assert result.err == f"manage.py {command}: error: {message}\n"


def test_shown_quotes_and_cuts_any_value():
    assert shown("abc") == "'abc'"
    assert shown("a" * 41) == f"'{'a' * 40}'..."
    assert shown("\x1b[2J\r\n") == "'\\x1b[2J\\r\\n'"
    assert shown(10**12) == "1000000000000"
    assert shown(list(range(100))) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1..."
    # Beyond Python's int-to-str limit, repr itself fails: the type is named instead.
    assert shown(10**5000) == "<int>"


def test_cut_keeps_short_text_whole():
    assert cut("x" * 40) == "x" * 40
    assert cut("x" * 41) == "x" * 40 + "..."


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("value", ["-1", "x", "1.5", "\u0663", "10000001", "9" * 30])
def test_report_top_must_be_a_count(manage, value):
    result = manage("token_report", "--top", value)
    assert result.code == 2
    assert result.err == (
        "manage.py token_report: error: argument --top: expected a whole number from 0 to "
        f"10000000, got '{value}'\n"
    )


@pytest.mark.django_db(transaction=True)
def test_bad_older_than_setting_is_explained(manage, settings):
    settings.TOKENOPS = {"OLDER_THAN": "a week"}
    result = manage("token_report")
    assert result.code == 1
    assert result.err.startswith("CommandError: TOKENOPS['OLDER_THAN']: Invalid duration 'a week'")


@pytest.mark.django_db(transaction=True)
def test_unknown_tokenops_setting_is_named(manage, settings):
    settings.TOKENOPS = {"OLDER_THEN": "7d"}
    result = manage("token_report")
    assert (result.code, result.err) == (
        1,
        "CommandError: Unknown TOKENOPS setting(s): OLDER_THEN\n",
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_unmigrated_database_says_to_migrate(tmp_path, command):
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    done = run_manage(command, env=project_env(sqlite_url(empty)))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "CommandError: Table token_blacklist_outstandingtoken does not exist in database "
        f"'default': {MIGRATE_HINT}\n"
    )
    assert empty.stat().st_size == 0


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_unreachable_database(command):
    done = run_manage(command, env=project_env("postgres://nobody@127.0.0.1:9/nowhere"))
    assert done.returncode == 1
    err = done.stderr
    assert err.startswith("CommandError: Cannot reach database 'default': ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_missing_blacklist_app_is_named(command, migrated_sqlite):
    done = run_manage(
        command,
        env=project_env(
            sqlite_url(migrated_sqlite), settings_module="tests.settings_without_blacklist"
        ),
    )
    assert done.returncode == 1
    assert done.stderr == (
        "CommandError: 'rest_framework_simplejwt.token_blacklist' is not in INSTALLED_APPS: "
        "tokenops works on simplejwt's token blacklist tables; add the app and run "
        "'python manage.py migrate'.\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_missing_sqlite_file_is_not_created(tmp_path, command):
    missing = tmp_path / "typo.sqlite3"
    done = run_manage(command, env=project_env(sqlite_url(missing)))
    assert done.returncode == 1
    assert done.stderr == (
        f"CommandError: Database file {missing} of 'default' does not exist: check "
        "DATABASES, or run 'python manage.py migrate' to create it.\n"
    )
    assert not missing.exists()


DRIVER_ERROR = OperationalError(
    'connection to server at "127.0.0.1", port 9 failed: Connection refused\n'
    "\tIs the server running on that host and accepting TCP/IP connections?\n"
)


def test_first_line_of_a_driver_message():
    assert first_line(DRIVER_ERROR) == (
        'connection to server at "127.0.0.1", port 9 failed: Connection refused'
    )
    assert first_line(TokenopsError("  \n  padded\nsecond  ")) == "padded"


@pytest.mark.parametrize("exc", [OperationalError(), TokenopsError("  \n ")])
def test_first_line_of_an_empty_message_is_the_class_name(exc):
    assert first_line(exc) == type(exc).__name__


def test_unknown_alias_lists_the_configured_ones():
    assert unknown_alias("nope") == (
        "Unknown database alias 'nope' (configured: default, secondary)."
    )


def test_database_messages_are_one_line():
    assert unreachable("default", DRIVER_ERROR) == (
        "Cannot reach database 'default': connection to server at \"127.0.0.1\", port 9 "
        "failed: Connection refused"
    )
    assert database_error("secondary", OperationalError("database is locked")) == (
        "Database error on 'secondary': database is locked"
    )
