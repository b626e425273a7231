"""tokenops.history: every purge path leaves one true PurgeRun row, recording never breaks
a purge, and readers (recent_runs, shown_outcome, last_success) tell what really happened."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import (
    database_url,
    dropped,
    expired_and_active,
    make_tokens,
    project_env,
    start_manage,
    utcnow,
    wait_until,
)
from tokenops.console import login_name
from tokenops.dbtime import to_db
from tokenops.history import (
    PurgeRecorder,
    last_success,
    recent_runs,
    shown_outcome,
    stale_before,
)
from tokenops.models import PurgeRun
from tokenops.operations import PurgeRequest, run_purge

pytestmark = pytest.mark.django_db(transaction=True)

Outcome = PurgeRun.Outcome
HOUR = timedelta(hours=1)


def token_rows() -> list[tuple]:
    return sorted(OutstandingToken.objects.values_list("pk", "jti", "expires_at")) + sorted(
        BlacklistedToken.objects.values_list("pk", "token_id")
    )


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


def running_run(silent_for: timedelta, **fields) -> PurgeRun:
    """A "running" row whose last sign of life was ``silent_for`` ago."""
    moment = to_db(utcnow() - silent_for)
    return make_run(
        started_at=moment, finished_at=None, heartbeat_at=moment, outcome=Outcome.RUNNING, **fields
    )


def test_dry_run_writes_one_row_and_touches_no_token(manage):
    expired_and_active()
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


def test_real_run_records_counts_options_and_cutoff(manage):
    expired_and_active()
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


def test_every_caller_names_itself():
    expired_and_active()
    run_purge(PurgeRequest(older_than=timedelta(0), trigger="task"))
    run_purge(
        PurgeRequest(older_than=timedelta(0), dry_run=True, trigger="admin", started_by="olga")
    )
    assert list(PurgeRun.objects.order_by("pk").values_list("trigger", "started_by")) == [
        ("task", ""),
        ("admin", "olga"),
    ]


def test_failed_run_is_recorded_with_its_error(manage):
    expired_and_active()
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


def test_interrupted_run_says_so_and_counts_what_went():
    expired_and_active()
    with pytest.raises(KeyboardInterrupt):
        run_purge(
            PurgeRequest(older_than=timedelta(0), batch_size=2), progress=StopAfterFirstBatch()
        )
    run = PurgeRun.objects.get()
    assert run.outcome == Outcome.INTERRUPTED
    assert run.error == "Interrupted (Ctrl+C or SIGINT)."
    assert (run.outstanding_deleted, run.outstanding_after) == (2, 7)
    assert OutstandingToken.objects.count() == 7


def test_dry_run_on_a_read_only_database_goes_on_and_says_so(manage):
    expired_and_active()
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


def test_purge_works_without_the_history_table(manage):
    expired_and_active()
    with dropped(PurgeRun):
        result = manage("token_purge")
    assert result.code == 0
    assert result.out.startswith("Deleted 5 outstanding tokens and 2 blacklisted tokens")
    assert result.err.startswith(
        "Warning: the purge history was not recorded in database 'default': "
    )
    assert result.err.count("\n") == 1
    assert OutstandingToken.objects.count() == 4


def test_unrecorded_history_goes_to_warn_or_to_the_log(caplog):
    expired_and_active()
    warned: list[str] = []
    with dropped(PurgeRun):
        run_purge(PurgeRequest(dry_run=True), warn=warned.append)
        assert caplog.records == []
        run_purge(PurgeRequest(dry_run=True))
    [message] = warned
    assert message.startswith("the purge history was not recorded in database 'default': ")
    assert [r.getMessage() for r in caplog.records if r.name == "tokenops"][-1] == message


def test_report_without_the_history_table_still_reports(manage):
    expired_and_active()
    with dropped(PurgeRun):
        result = manage("token_report")
    assert (result.code, result.err) == (0, "")
    assert "\nLast successful purge: unknown (the purge history cannot be read: " in result.out


@pytest.fixture(params=["aware UTC", "naive Moscow"])
def time_settings(request, settings):
    if request.param == "naive Moscow":
        settings.USE_TZ = False
        settings.TIME_ZONE = "Europe/Moscow"


def test_old_history_is_pruned_by_real_runs_only(time_settings, caplog):
    expired_and_active()
    long_ago = to_db(utcnow() - timedelta(days=400))
    old = make_run(started_at=long_ago, finished_at=long_ago, heartbeat_at=long_ago)
    recent = make_run(started_at=to_db(utcnow() - timedelta(days=300)))
    run_purge(PurgeRequest(older_than=timedelta(0), dry_run=True))
    assert PurgeRun.objects.filter(pk=old.pk).exists()
    run_purge(PurgeRequest(older_than=timedelta(0)))
    assert not PurgeRun.objects.filter(pk=old.pk).exists()
    assert PurgeRun.objects.filter(pk=recent.pk).exists()
    with override_settings(TOKENOPS={"HISTORY_KEEP": "30d"}):
        run_purge(PurgeRequest(older_than=timedelta(0)))
    assert not PurgeRun.objects.filter(pk=recent.pk).exists()
    assert PurgeRun.objects.count() == 3
    assert "not recorded" not in caplog.text


def test_history_keep_none_keeps_every_row():
    ancient = make_run(started_at=to_db(utcnow() - timedelta(days=4000)))
    with override_settings(TOKENOPS={"HISTORY_KEEP": None}):
        run_purge(PurgeRequest())
    assert PurgeRun.objects.filter(pk=ancient.pk).exists()
    assert PurgeRun.objects.count() == 2


def recorder(*, running_timeout: timedelta, keep: timedelta | None) -> PurgeRecorder:
    return PurgeRecorder(
        "default",
        trigger="command",
        started_by="",
        dry_run=False,
        older_than=timedelta(0),
        batch_size=None,
        running_timeout=running_timeout,
        keep=keep,
    )


def test_recorder_closes_and_prunes_by_the_limits_it_is_given(time_settings):
    """No TOKENOPS lookup inside: the timeout and HISTORY_KEEP are arguments."""
    killed = running_run(timedelta(minutes=45))
    alive = running_run(timedelta(minutes=15))
    old = make_run(started_at=to_db(utcnow() - timedelta(days=11)))
    with recorder(running_timeout=timedelta(minutes=30), keep=None) as first:
        pass
    killed.refresh_from_db()
    assert (killed.outcome, killed.finished_at) == (Outcome.INTERRUPTED, killed.heartbeat_at)
    assert killed.error.startswith("No sign of life since ")
    assert PurgeRun.objects.get(pk=alive.pk).outcome == Outcome.RUNNING
    assert PurgeRun.objects.filter(pk=old.pk).exists()
    assert (first.row.outcome, first.problem) == (Outcome.OK, None)
    with recorder(running_timeout=timedelta(minutes=10), keep=timedelta(days=10)):
        pass
    assert PurgeRun.objects.get(pk=alive.pk).outcome == Outcome.INTERRUPTED
    assert not PurgeRun.objects.filter(pk=old.pk).exists()
    assert PurgeRun.objects.count() == 4


def test_running_timeout_setting_decides_which_rows_died():
    silent = running_run(timedelta(minutes=45))
    run_purge(PurgeRequest())
    assert PurgeRun.objects.get(pk=silent.pk).outcome == Outcome.RUNNING
    with override_settings(TOKENOPS={"RUNNING_TIMEOUT": "30m"}):
        run_purge(PurgeRequest())
    assert PurgeRun.objects.get(pk=silent.pk).outcome == Outcome.INTERRUPTED


def test_stale_before_is_the_timeout_back_from_now_as_stored(time_settings):
    now = utcnow()
    assert stale_before(now, HOUR) == to_db(now - HOUR)
    assert stale_before(now, timedelta(0)) == to_db(now)


def test_shown_outcome_turns_a_silent_running_row_into_interrupted(time_settings):
    silent = running_run(timedelta(hours=2))
    fresh = running_run(timedelta(minutes=1))
    failed = make_run(outcome=Outcome.FAILED, heartbeat_at=to_db(utcnow() - timedelta(days=9)))
    assert shown_outcome(silent, HOUR) == Outcome.INTERRUPTED
    assert shown_outcome(silent, timedelta(hours=3)) == Outcome.RUNNING
    assert shown_outcome(silent, None) == Outcome.RUNNING  # TOKENOPS unreadable: the raw value
    assert shown_outcome(fresh, HOUR) == Outcome.RUNNING
    assert shown_outcome(failed, HOUR) == Outcome.FAILED
    silent.refresh_from_db()
    assert silent.outcome == Outcome.RUNNING  # reading never writes


def test_recent_runs_are_the_newest_with_their_real_outcome(time_settings):
    now = utcnow()
    oldest = make_run(started_at=to_db(now - timedelta(days=3)))
    failed = make_run(started_at=to_db(now - timedelta(days=2)), outcome=Outcome.FAILED)
    killed = running_run(timedelta(hours=2))
    dry = make_run(started_at=to_db(now - timedelta(minutes=5)), dry_run=True)
    going = running_run(timedelta(seconds=1))
    runs = recent_runs("default", 4, HOUR)
    assert [run.pk for run in runs] == [going.pk, dry.pk, killed.pk, failed.pk]
    assert [run.shown_class for run in runs] == ["running", "ok", "interrupted", "failed"]
    assert [str(run.shown_outcome) for run in runs] == ["running", "ok", "interrupted", "failed"]
    assert [run.outcome for run in runs] == ["running", "ok", "running", "failed"]
    assert [run.pk for run in recent_runs("default", 10, HOUR)][-1] == oldest.pk
    assert recent_runs("default", 10, timedelta(hours=3))[2].shown_class == "running"


def test_recent_runs_is_empty_when_the_history_cannot_be_read():
    make_run()
    assert len(recent_runs("default", 5, HOUR)) == 1
    with dropped(PurgeRun):
        assert recent_runs("default", 5, HOUR) == []


def test_last_success_is_the_latest_real_success(time_settings):
    assert last_success("default") == (None, "")
    first = make_run(started_at=to_db(utcnow() - timedelta(days=20)))
    make_run(outcome=Outcome.FAILED)
    make_run(dry_run=True)  # dry runs are not purges
    assert last_success("default") == (first, "")
    latest = make_run(started_at=to_db(utcnow() - timedelta(days=1)))
    assert last_success("default") == (latest, "")
    with dropped(PurgeRun):
        unreadable, error = last_success("default")
    assert unreadable is None
    assert error


def test_last_purge_is_shown_and_no_warning_when_recent(manage):
    expired_and_active()
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
        "7 outstanding tokens and 2 blacklisted tokens deleted.\n"
    )


def test_stale_purge_warning(manage):
    expired_and_active()
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


def test_stale_purge_warning_and_last_purge_in_the_singular(manage):
    make_tokens([utcnow() - timedelta(days=2)], blacklisted=True)
    a_day_ago = to_db(utcnow() - timedelta(days=1, hours=1))
    make_run(
        started_at=a_day_ago,
        finished_at=a_day_ago,
        outstanding_deleted=1,
        blacklisted_deleted=1,
    )
    with override_settings(TOKENOPS={"PURGE_WARN_AFTER": "1h"}):
        result = manage("token_report")
    assert result.code == 0
    assert result.err == (
        "Warning: no purge has succeeded for 1 day, and 1 token is purgeable. "
        "Is the scheduled purge still running?\n"
    )
    assert result.out.endswith(
        "UTC (command), 1 outstanding token and 1 blacklisted token deleted.\n"
    )


def test_no_warning_while_nothing_is_purgeable(manage):
    make_tokens([utcnow() + timedelta(days=1)])
    long_ago = to_db(utcnow() - timedelta(days=60))
    make_run(started_at=long_ago, finished_at=long_ago)
    result = manage("token_report")
    assert (result.code, result.err) == (0, "")


def test_warning_when_no_purge_ever_succeeded(manage):
    expired_and_active()  # 5 purgeable tokens, expired 2 and 3 days ago
    assert manage("token_report").out.endswith("\nLast successful purge: none recorded.\n")
    assert manage("token_report").err == ""
    long_ago = to_db(utcnow() - timedelta(days=30, hours=1))
    make_run(started_at=long_ago, outcome=Outcome.FAILED, error="boom")
    # Counted from the tokens' expiry, as --check counts, never from the history's start.
    assert manage("token_report").err == ""
    with override_settings(TOKENOPS={"PURGE_WARN_AFTER": "2d"}):
        assert manage("token_report").err == (
            "Warning: no purge has ever succeeded, and 5 tokens are purgeable (the oldest "
            "expired more than 2d ago). Is the scheduled purge running?\n"
        )


# --- a purge stopped from outside, in a real process ------------------------------------


def start_purge() -> subprocess.Popen:
    """``token_purge`` in small batches in its own process, on this test's database."""
    return start_manage(
        "token_purge", "--batch-size", "10", "--no-progress", env=project_env(database_url())
    )


def first_batch_recorded(process: subprocess.Popen) -> PurgeRun:
    def seen() -> PurgeRun | None:
        assert process.poll() is None, process.communicate()
        run = PurgeRun.objects.first()
        return run if run is not None and run.outstanding_deleted else None

    return wait_until(seen, timeout=60, what="the purge's first batch in its history row")


@pytest.mark.slow
def test_killed_purge_is_shown_as_interrupted_and_closed_by_the_next_run(manage):
    make_tokens([utcnow() - timedelta(days=2)] * 20_000, user="bulk")
    process = start_purge()
    try:
        first_batch_recorded(process)
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
    assert run.outcome_at(stale_before(utcnow(), HOUR)) == Outcome.RUNNING
    later = utcnow() + timedelta(hours=1, minutes=1)
    assert run.outcome_at(stale_before(later, HOUR)) == Outcome.INTERRUPTED
    assert shown_outcome(run, HOUR) == Outcome.RUNNING
    # The next purge, once the timeout has passed, writes the truth into the row.
    PurgeRun.objects.filter(pk=run.pk).update(heartbeat_at=to_db(utcnow() - timedelta(hours=2)))
    assert manage("token_purge").code == 0
    run.refresh_from_db()
    assert run.outcome == Outcome.INTERRUPTED
    assert run.finished_at == run.heartbeat_at
    assert run.error.startswith("No sign of life since ")
    latest = PurgeRun.objects.exclude(pk=run.pk).get()
    assert (latest.outcome, latest.outstanding_deleted) == (Outcome.OK, remaining)
    assert last_success("default") == (latest, "")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal")
def test_terminated_purge_records_interrupted_with_the_exact_count():
    make_tokens([utcnow() - timedelta(days=2)] * 20_000, user="bulk")
    process = start_purge()
    try:
        first_batch_recorded(process)
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
