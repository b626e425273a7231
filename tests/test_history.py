"""The purge history: every purge path leaves one true PurgeRun row, and recording never
breaks a purge."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.conftest import stored, utcnow
from tokenops.dbtime import to_db
from tokenops.history import login_name, purge_status, stale_before
from tokenops.models import PurgeRun
from tokenops.purging import run_purge

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
Outcome = PurgeRun.Outcome


def expired_and_active(make_tokens) -> None:
    make_tokens([utcnow() - timedelta(days=3)] * 3)
    make_tokens([utcnow() - timedelta(days=2)] * 2, blacklisted=True)
    make_tokens([utcnow() + timedelta(days=1)] * 4)


def token_rows() -> list[tuple]:
    return sorted(OutstandingToken.objects.values_list("pk", "jti", "expires_at")) + sorted(
        BlacklistedToken.objects.values_list("pk", "token_id")
    )


@contextlib.contextmanager
def dropped(model) -> Iterator[None]:
    """The model's table is gone for the block (an unmigrated table), and back afterwards."""
    with connection.schema_editor() as editor:
        editor.delete_model(model)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(model)


def read_only_session() -> None:
    """Make the current connection refuse every write, on each backend its own way."""
    statement = {
        "sqlite": "PRAGMA query_only = ON",
        "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "mysql": "SET SESSION TRANSACTION READ ONLY",
    }[connection.vendor]
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute(statement)


def make_run(**fields) -> PurgeRun:
    now = utcnow()
    values = {
        "started_at": to_db(now),
        "finished_at": to_db(now),
        "heartbeat_at": to_db(now),
        "trigger": "command",
        "database": "default",
        "outcome": Outcome.OK,
        "outstanding_deleted": 7,
        "blacklisted_deleted": 2,
        **fields,
    }
    return PurgeRun.objects.create(**values)


def test_dry_run_writes_one_row_and_touches_no_token(manage, make_tokens):
    expired_and_active(make_tokens)
    tokens = token_rows()
    result = manage("token_purge", "--dry-run", "--older-than", "1d")
    assert (result.code, result.err) == (0, "")
    assert token_rows() == tokens
    run = PurgeRun.objects.get()
    assert run.dry_run is True
    assert run.outcome == Outcome.OK
    assert (run.trigger, run.started_by, run.database) == ("command", login_name(), "default")
    assert run.older_than == timedelta(days=1)
    assert (run.outstanding_before, run.blacklisted_before) == (9, 2)
    assert (run.outstanding_purgeable, run.blacklisted_purgeable) == (5, 2)
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (0, 0)
    assert run.finished_at >= run.started_at
    assert run.error == ""


def test_real_run_records_counts_options_and_cutoff(manage, make_tokens):
    expired_and_active(make_tokens)
    result = manage("token_purge", "--batch-size", "2", "--older-than", "1d")
    assert (result.code, result.err) == (0, "")
    run = PurgeRun.objects.get()
    assert (run.dry_run, run.outcome, run.batch_size) == (False, Outcome.OK, 2)
    assert (run.outstanding_purgeable, run.blacklisted_purgeable) == (5, 2)
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (5, 2)
    assert (run.outstanding_after, run.blacklisted_after) == (4, 0)
    assert run.cutoff_reason == "older-than"
    assert run.started_at - timedelta(days=1, seconds=5) < run.cutoff < run.started_at
    assert OutstandingToken.objects.count() == 4


def test_every_caller_names_itself(make_tokens):
    expired_and_active(make_tokens)
    run_purge("default", timedelta(0), dry_run=False, trigger="task")
    run_purge("default", timedelta(0), dry_run=True, trigger="admin", started_by="olga")
    assert list(PurgeRun.objects.order_by("pk").values_list("trigger", "started_by")) == [
        ("task", ""),
        ("admin", "olga"),
    ]


def test_failed_run_is_recorded_with_its_error(manage, make_tokens):
    expired_and_active(make_tokens)
    with dropped(BlacklistedToken):
        result = manage("token_purge")
    table = BlacklistedToken._meta.db_table
    assert result.code == 1
    assert result.err == (
        f"CommandError: Table {table} does not exist in database 'default': "
        "run 'python manage.py migrate --database default'.\n"
    )
    run = PurgeRun.objects.get()
    assert run.outcome == Outcome.FAILED
    assert run.error == (
        f"Table {table} does not exist in database 'default': "
        "run 'python manage.py migrate --database default'."
    )
    assert run.finished_at is not None
    assert OutstandingToken.objects.count() == 9


class StopAfterFirstBatch:
    """A progress display whose user presses Ctrl+C once the first batch is in."""

    def start(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_interrupted_run_says_so_and_counts_what_went(make_tokens):
    expired_and_active(make_tokens)
    with pytest.raises(KeyboardInterrupt):
        run_purge(
            "default", timedelta(0), dry_run=False, batch_size=2, progress=StopAfterFirstBatch()
        )
    run = PurgeRun.objects.get()
    assert run.outcome == Outcome.INTERRUPTED
    assert run.error == "Interrupted (Ctrl+C or SIGINT)."
    assert (run.outstanding_deleted, run.outstanding_after) == (2, 7)
    assert OutstandingToken.objects.count() == 7


def test_dry_run_on_a_read_only_database_goes_on_and_says_so(manage, make_tokens):
    expired_and_active(make_tokens)
    tokens = token_rows()
    read_only_session()
    result = manage("token_purge", "--dry-run")
    assert result.code == 0
    assert result.out.startswith("Dry run: nothing was deleted. Would delete 5 outstanding")
    assert result.err.startswith(
        "Warning: the purge history was not recorded in database 'default': "
    )
    assert result.err.count("\n") == 1
    assert token_rows() == tokens
    assert PurgeRun.objects.count() == 0


def test_purge_works_without_the_history_table(manage, make_tokens):
    expired_and_active(make_tokens)
    with dropped(PurgeRun):
        result = manage("token_purge")
    assert result.code == 0
    assert result.out.startswith("Deleted 5 outstanding and 2 blacklisted tokens")
    assert result.err.startswith(
        "Warning: the purge history was not recorded in database 'default': "
    )
    assert result.err.count("\n") == 1
    assert OutstandingToken.objects.count() == 4


def test_report_without_the_history_table_still_reports(manage, make_tokens):
    expired_and_active(make_tokens)
    with dropped(PurgeRun):
        result = manage("token_report")
    assert (result.code, result.err) == (0, "")
    assert "\nLast successful purge: unknown (the purge history cannot be read: " in result.out


@pytest.fixture(params=["aware UTC", "naive Moscow"])
def time_settings(request, settings):
    if request.param == "naive Moscow":
        settings.USE_TZ = False
        settings.TIME_ZONE = "Europe/Moscow"


def test_old_history_is_pruned_by_real_runs_only(time_settings, make_tokens, caplog):
    expired_and_active(make_tokens)
    long_ago = to_db(utcnow() - timedelta(days=400))
    old = make_run(started_at=long_ago, finished_at=long_ago, heartbeat_at=long_ago)
    recent = make_run(started_at=to_db(utcnow() - timedelta(days=300)))
    run_purge("default", timedelta(0), dry_run=True)
    assert PurgeRun.objects.filter(pk=old.pk).exists()
    run_purge("default", timedelta(0), dry_run=False)
    assert not PurgeRun.objects.filter(pk=old.pk).exists()
    assert PurgeRun.objects.filter(pk=recent.pk).exists()
    with override_settings(TOKENOPS={"HISTORY_KEEP": "30d"}):
        run_purge("default", timedelta(0), dry_run=False)
    assert not PurgeRun.objects.filter(pk=recent.pk).exists()
    assert PurgeRun.objects.count() == 3
    assert "not recorded" not in caplog.text


def test_last_purge_is_shown_and_no_warning_when_recent(manage, make_tokens):
    expired_and_active(make_tokens)
    finished = utcnow() - timedelta(days=13)
    make_run(
        started_at=to_db(finished - timedelta(minutes=1)),
        finished_at=to_db(finished),
        started_by="olga",
        trigger="admin",
    )
    make_run(dry_run=True, outstanding_deleted=0)  # dry runs are not purges
    result = manage("token_report")
    assert (result.code, result.err) == (0, "")
    assert result.out.endswith(
        f"\n\nLast successful purge: {finished:%Y-%m-%d %H:%M:%S} UTC (admin, olga), "
        "7 outstanding and 2 blacklisted tokens deleted.\n"
    )


def test_stale_purge_warning(manage, make_tokens):
    expired_and_active(make_tokens)
    twenty_days_ago = to_db(utcnow() - timedelta(days=20, hours=1))
    make_run(started_at=twenty_days_ago, finished_at=twenty_days_ago)
    make_run(outcome=Outcome.FAILED, error="boom")
    result = manage("token_report")
    assert result.code == 0
    assert result.err == (
        "Warning: no purge has succeeded for 20 days, and 5 tokens are purgeable. "
        "Is the scheduled purge still running?\n"
    )
    assert "\nLast successful purge: " in result.out
    json_result = manage("token_report", "--format", "json")
    assert '"purge_overdue": true' in json_result.out
    assert json_result.err == result.err
    with override_settings(TOKENOPS={"PURGE_WARN_AFTER": "3w"}):
        assert manage("token_report").err == ""


def test_no_warning_while_nothing_is_purgeable(manage, make_tokens):
    make_tokens([utcnow() + timedelta(days=1)])
    long_ago = to_db(utcnow() - timedelta(days=60))
    make_run(started_at=long_ago, finished_at=long_ago)
    result = manage("token_report")
    assert (result.code, result.err) == (0, "")


def test_warning_when_no_purge_ever_succeeded(manage, make_tokens):
    expired_and_active(make_tokens)
    assert manage("token_report").out.endswith("\nLast successful purge: none recorded.\n")
    assert manage("token_report").err == ""  # no history at all: nothing to compare with
    long_ago = to_db(utcnow() - timedelta(days=30, hours=1))
    make_run(started_at=long_ago, outcome=Outcome.FAILED, error="boom")
    assert manage("token_report").err == (
        "Warning: no purge has succeeded since the purge history began 30 days ago, and "
        "5 tokens are purgeable. Is the scheduled purge running?\n"
    )


# --- a purge stopped from outside, in a real process ------------------------------------


def database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    user = settings["USER"]
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"]
    return f"{scheme}://{user}@{host}:{port}/{settings['NAME']}"


def many_expired_tokens(count: int) -> None:
    user, _ = get_user_model().objects.get_or_create(username="bulk")
    expires = stored(utcnow() - timedelta(days=2))
    OutstandingToken.objects.bulk_create(
        OutstandingToken(
            user=user, jti=uuid.uuid4().hex, token="t", created_at=expires, expires_at=expires
        )
        for _ in range(count)
    )


def start_purge() -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "token_purge", "--batch-size", "10", "--no-progress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_first_batch(process: subprocess.Popen) -> PurgeRun:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = PurgeRun.objects.first()
        if run is not None and run.outstanding_deleted:
            return run
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("the purge never reported its first batch")


@pytest.mark.slow
def test_killed_purge_is_shown_as_interrupted_and_closed_by_the_next_run(manage):
    many_expired_tokens(20_000)
    process = start_purge()
    try:
        wait_for_first_batch(process)
    finally:
        process.kill()
        process.communicate()
    remaining = OutstandingToken.objects.count()
    assert 0 < remaining < 20_000, "the purge was not stopped part way"
    run = PurgeRun.objects.get()
    # The row cannot know it died; it shows what it had done at its last sign of life.
    assert (run.outcome, run.finished_at) == (Outcome.RUNNING, None)
    assert run.outstanding_purgeable == 20_000
    assert 10 <= run.outstanding_deleted <= 20_000 - remaining
    assert run.outcome_at(stale_before(utcnow())) == Outcome.RUNNING
    later = utcnow() + timedelta(hours=1, minutes=1)
    assert run.outcome_at(stale_before(later)) == Outcome.INTERRUPTED
    # The next purge, once the timeout has passed, writes the truth into the row.
    PurgeRun.objects.filter(pk=run.pk).update(heartbeat_at=to_db(utcnow() - timedelta(hours=2)))
    assert manage("token_purge").code == 0
    run.refresh_from_db()
    assert run.outcome == Outcome.INTERRUPTED
    assert run.finished_at == run.heartbeat_at
    assert run.error.startswith("No sign of life since ")
    latest = PurgeRun.objects.exclude(pk=run.pk).get()
    assert (latest.outcome, latest.outstanding_deleted) == (Outcome.OK, remaining)
    status = purge_status("default", utcnow(), 0)
    assert status.last_success == latest


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal")
def test_terminated_purge_records_interrupted_with_the_exact_count():
    many_expired_tokens(20_000)
    process = start_purge()
    try:
        wait_for_first_batch(process)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert out == ""
    assert err == (
        "CommandError: Interrupted: every finished batch is committed and the tables are "
        "consistent; run token_purge again to finish.\n"
    )
    remaining = OutstandingToken.objects.count()
    assert 0 < remaining < 20_000
    run = PurgeRun.objects.get()
    assert (run.outcome, run.error) == (Outcome.INTERRUPTED, "Stopped by SIGTERM.")
    assert (run.outstanding_deleted, run.outstanding_after) == (20_000 - remaining, remaining)
