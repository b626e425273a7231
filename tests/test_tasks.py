"""The Celery task in-process (``task.apply()``, eager) against the real test databases.

Eager retries run at once (Celery ignores the countdown in ``apply``), so the retry
policy is checked here against a really locked SQLite file; the worker tests check the
same through Redis.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta

import pytest
from django.db import OperationalError, connections
from django.test import override_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import driver_error, sqlite_full_error, utcnow
from tokenops import purging
from tokenops.app_settings import MAX_ROWS
from tokenops.errors import TokenopsError
from tokenops.models import PurgeRun
from tokenops.operations import PurgeRequest
from tokenops.scheduling.schedule import CELERY_TASK
from tokenops.tasks import is_transient, purge_expired_tokens, validate_arguments

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "secondary"])


@pytest.fixture
def rows(make_tokens):
    """Three purgeable rows with --older-than 1d (two blacklisted), four kept (two blacklisted)."""

    def make(using: str = "default") -> tuple[set[int], set[int]]:
        now = utcnow()
        old = make_tokens([now - timedelta(days=3)] * 2, blacklisted=True, using=using)
        old += make_tokens([now - timedelta(days=3)], using=using)
        recent = make_tokens([now - timedelta(hours=2)], blacklisted=True, using=using)
        recent += make_tokens([now - timedelta(hours=2)], using=using)
        future = make_tokens([now + timedelta(days=7)], blacklisted=True, using=using)
        future += make_tokens([now + timedelta(days=7)], using=using)
        return {row.pk for row in old}, {row.pk for row in recent + future}

    return make


def tokenops_messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tokenops" and (level is None or r.levelno == level)
    ]


def remaining(using: str = "default") -> set[int]:
    return set(OutstandingToken.objects.using(using).values_list("pk", flat=True))


def test_returns_the_token_purge_json_and_deletes_exactly_the_purgeable_rows(rows, manage):
    _purged, kept = rows()
    dry = manage("token_purge", "--dry-run", "--older-than", "1d", "--format", "json")
    expected = json.loads(dry.out)

    result = purge_expired_tokens.apply(kwargs={"older_than": "1d"})

    assert result.successful(), result.traceback
    value = result.get()
    assert set(value) == set(expected) | {"skipped"}
    assert value["skipped"] is False
    assert value["dry_run"] is False
    assert value["database"] == "default"
    assert value["older_than_seconds"] == 86400
    assert value["before"] == {"outstanding": 7, "blacklisted": 4}
    assert value["purgeable"] == {"outstanding": 3, "blacklisted": 2}
    assert value["deleted"] == {"outstanding": 3, "blacklisted": 2}
    assert value["after"] == {"outstanding": 4, "blacklisted": 2}
    assert remaining() == kept
    assert BlacklistedToken.objects.count() == 2
    json.dumps(value)  # what the result backend stores
    run = PurgeRun.objects.filter(dry_run=False).get()
    assert (run.trigger, run.outcome, run.outstanding_deleted) == ("task", "ok", 3)


def test_dry_run_writes_nothing(rows):
    purged, kept = rows()

    value = purge_expired_tokens.apply(kwargs={"older_than": "1d", "dry_run": True}).get()

    assert value["dry_run"] is True
    assert value["purgeable"] == {"outstanding": 3, "blacklisted": 2}
    assert value["deleted"] == {"outstanding": 0, "blacklisted": 0}
    assert remaining() == purged | kept


def test_default_purges_everything_expired(rows):
    """With TOKENOPS["OLDER_THAN"] at its default, "0d"."""
    purged, kept = rows()

    value = purge_expired_tokens.apply().get()

    assert value["older_than_seconds"] == 0
    assert value["deleted"] == {"outstanding": 5, "blacklisted": 3}
    left = remaining()
    assert len(left) == 2
    assert left < kept
    assert not left & purged


@override_settings(TOKENOPS={"OLDER_THAN": "1d"})
def test_without_older_than_the_task_follows_the_older_than_setting(rows):
    _purged, kept = rows()

    result = purge_expired_tokens.apply(kwargs={"batch_size": 2})

    assert result.successful(), result.traceback
    value = result.get()
    assert (value["older_than_seconds"], value["older_than_source"]) == (86400, "setting")
    assert value["deleted"] == {"outstanding": 3, "blacklisted": 2}
    assert remaining() == kept
    run = PurgeRun.objects.get()
    assert (run.trigger, run.older_than, run.batch_size) == ("task", timedelta(days=1), 2)


@override_settings(TOKENOPS={"OLDER_THAN": "1w"})
def test_a_given_older_than_wins_over_the_setting(rows):
    _purged, kept = rows()

    value = purge_expired_tokens(older_than="1d")

    assert (value["older_than_seconds"], value["older_than_source"]) == (86400, "option")
    assert remaining() == kept
    assert PurgeRun.objects.get().older_than == timedelta(days=1)


def test_called_directly_the_task_reads_the_setting_at_call_time(rows):
    _purged, kept = rows()
    with override_settings(TOKENOPS={"OLDER_THAN": "1w"}):
        assert purge_expired_tokens(dry_run=True)["older_than_seconds"] == 7 * 86400
    with override_settings(TOKENOPS={"OLDER_THAN": "1d"}):
        assert purge_expired_tokens()["deleted"] == {"outstanding": 3, "blacklisted": 2}
    assert remaining() == kept


def test_a_bad_older_than_setting_fails_the_task_and_deletes_nothing(rows):
    purged, kept = rows()

    with override_settings(TOKENOPS={"OLDER_THAN": "soon"}):
        result = purge_expired_tokens.apply()

    assert result.failed()
    assert isinstance(result.result, TokenopsError)
    assert str(result.result).startswith("TOKENOPS['OLDER_THAN']: Invalid duration 'soon'")
    assert remaining() == purged | kept


def test_validate_arguments_takes_batch_sizes_up_to_the_commands_bound():
    assert validate_arguments(None, MAX_ROWS, "default", False).batch_size == MAX_ROWS
    with pytest.raises(TokenopsError) as raised:
        validate_arguments(None, MAX_ROWS + 1, "default", False)
    assert str(raised.value) == (
        "batch_size must be a whole number from 1 to 10000000, got 10000001."
    )


def test_validate_arguments_leaves_the_defaults_to_the_settings():
    assert validate_arguments(None, None, "default", False) == PurgeRequest(
        "default", older_than=None, batch_size=None, dry_run=False, trigger="task"
    )
    assert validate_arguments("1w2d", 50, "secondary", True) == PurgeRequest(
        "secondary", older_than=timedelta(days=9), batch_size=50, dry_run=True, trigger="task"
    )


def test_batch_size_and_database_are_honoured(rows):
    _purged, kept = rows(using="secondary")

    value = purge_expired_tokens.apply(
        kwargs={"older_than": "1d", "batch_size": 1, "database": "secondary"}
    ).get()

    assert value["database"] == "secondary"
    assert value["batches"] == 3
    assert remaining("secondary") == kept


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"older_than": "banana"}, "Invalid duration 'banana'"),
        ({"older_than": 7}, "older_than must be a duration string"),
        ({"batch_size": 0}, "batch_size must be a whole number from 1 to 10000000, got 0."),
        (
            {"batch_size": "100"},
            "batch_size must be a whole number from 1 to 10000000, got '100'.",
        ),
        # The command's bound: on PostgreSQL 10**12 lost the run's history row.
        (
            {"batch_size": 10**12},
            "batch_size must be a whole number from 1 to 10000000, got 1000000000000.",
        ),
        pytest.param(
            {"batch_size": 10**5000},
            "batch_size must be a whole number from 1 to 10000000, got <int>.",
            id="batch_size-5000-digits",
        ),
        (
            {"older_than": "7" * 10_000 + "d"},
            f"Duration '{'7' * 40}'... is too large (at most 10 years).",
        ),
        ({"older_than": "7d7d"}, "Invalid duration '7d7d': give each unit at most once"),
        pytest.param(
            {"max_seconds": 10**400},
            "max_seconds must be a number of seconds above 0, got 1000",
            id="max_seconds-beyond-float",
        ),
        ({"database": "x" * 10_000}, f"Unknown database alias '{'x' * 40}'... (configured"),
        ({"dry_run": "false"}, "dry_run must be true or false, got 'false'."),
        ({"database": "nosuch"}, "Unknown database alias 'nosuch'"),
    ],
)
def test_bad_input_fails_the_task_without_retry_and_deletes_nothing(rows, caplog, kwargs, message):
    purged, kept = rows()
    caplog.set_level(logging.INFO, logger="tokenops")

    result = purge_expired_tokens.apply(kwargs=kwargs)

    assert result.failed()
    assert isinstance(result.result, TokenopsError)
    assert message in str(result.result)
    assert not tokenops_messages(caplog, logging.WARNING)
    assert remaining() == purged | kept


def test_missing_table_fails_without_retry(rows, caplog):
    rows(using="secondary")
    caplog.set_level(logging.INFO, logger="tokenops")
    connection = connections["secondary"]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE token_blacklist_blacklistedtoken RENAME TO tokenops_hidden")
    try:
        result = purge_expired_tokens.apply(kwargs={"database": "secondary"})
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE tokenops_hidden RENAME TO token_blacklist_blacklistedtoken")

    assert result.failed()
    assert str(result.result) == (
        "Table token_blacklist_blacklistedtoken does not exist in database 'secondary': "
        "run 'python manage.py migrate --database secondary'."
    )
    assert tokenops_messages(caplog) == [
        "token purge task failed on 'secondary': Table token_blacklist_blacklistedtoken does not "
        "exist in database 'secondary': run 'python manage.py migrate --database secondary'."
    ]


@pytest.fixture
def lock_secondary() -> Iterator[Callable[[], sqlite3.Connection]]:
    """Make another connection hold a write transaction on the secondary SQLite file.

    Django's connection then waits 0.2 s for the lock (instead of 5 s), so each attempt
    is quick.
    """
    connection = connections["secondary"]
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)
    locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)

    def lock() -> sqlite3.Connection:
        options["timeout"] = 0.2
        connection.close()
        locker.execute("BEGIN IMMEDIATE")
        return locker

    try:
        yield lock
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        options.clear()
        options.update(saved)
        connection.close()


@pytest.fixture
def few_retries() -> Iterator[None]:
    """What CELERY_TASK_ANNOTATIONS would set: two retries instead of five."""
    saved = purge_expired_tokens.max_retries
    purge_expired_tokens.max_retries = 2
    try:
        yield
    finally:
        purge_expired_tokens.max_retries = saved


def test_locked_database_is_retried_a_bounded_number_of_times_then_fails(
    rows, caplog, lock_secondary, few_retries
):
    purged, kept = rows(using="secondary")
    locker = lock_secondary()
    caplog.set_level(logging.INFO, logger="tokenops")

    result = purge_expired_tokens.apply(kwargs={"database": "secondary", "older_than": "1d"})

    assert result.failed()
    assert isinstance(result.result, OperationalError)
    assert "database is locked" in str(result.result)
    warnings = tokenops_messages(caplog, logging.WARNING)
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "token purge task on 'secondary' hit a transient database error (database is locked); "
        "retry 1 of 2 in "
    )
    assert "retry 2 of 2" in warnings[1]
    errors = tokenops_messages(caplog, logging.ERROR)
    assert errors == ["token purge task failed on 'secondary' after 2 retries: database is locked"]
    locker.execute("ROLLBACK")
    assert remaining("secondary") == purged | kept


class ReleaseOnRetry(logging.Handler):
    """Ends the other writer's transaction when the task announces its first retry."""

    def __init__(self, locker: sqlite3.Connection) -> None:
        super().__init__(logging.WARNING)
        self.locker = locker
        self.released = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retry 1 of" in record.getMessage() and self.locker.in_transaction:
            self.locker.execute("ROLLBACK")
            self.released += 1


def test_locked_database_succeeds_on_retry_once_the_lock_is_gone(rows, lock_secondary):
    _purged, kept = rows(using="secondary")
    handler = ReleaseOnRetry(lock_secondary())
    logger = logging.getLogger("tokenops")
    logger.addHandler(handler)
    try:
        result = purge_expired_tokens.apply(kwargs={"database": "secondary", "older_than": "1d"})
    finally:
        logger.removeHandler(handler)

    assert handler.released == 1
    assert result.successful(), result.traceback
    assert result.get()["deleted"] == {"outstanding": 3, "blacklisted": 2}
    assert remaining("secondary") == kept


def test_task_name_matches_what_beat_schedules():
    assert purge_expired_tokens.name == CELERY_TASK == "tokenops.tasks.purge_expired_tokens"
    assert purge_expired_tokens.max_retries == 5


def test_locking_really_blocks_writers(lock_secondary):
    """The fixture the retry tests rely on: a second writer gets 'database is locked'."""
    lock_secondary()
    path = connections["secondary"].settings_dict["NAME"]
    with (
        closing(sqlite3.connect(path, timeout=0.1)) as other,
        pytest.raises(sqlite3.OperationalError, match="database is locked"),
    ):
        other.execute("DELETE FROM token_blacklist_outstandingtoken")


def test_a_full_disk_is_not_retried(tmp_path):
    """Freeing disk space takes a person: five retries would only repeat the error."""
    cause = driver_error(sqlite_full_error(tmp_path))
    try:
        raise purging.out_of_space("default", cause, fitted=0, failed=1) from cause
    except TokenopsError as error:
        assert not is_transient(error)
    locked = driver_error(sqlite3.OperationalError("database is locked"))
    try:
        raise TokenopsError("Cannot reach database") from locked
    except TokenopsError as error:
        assert is_transient(error)
