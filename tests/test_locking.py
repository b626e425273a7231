"""One real purge per database at a time: the lock, and what every starter does when it is taken.

The lock is held by another thread of this process, on its own database connection (Django
connections are per thread): on PostgreSQL and MariaDB a different session, on SQLite a
different open file of the lock file. Processes holding it are in tests/slow/.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.db import OperationalError, connection, connections
from django.test import Client
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from tests.utils import expired_and_active, run_command, snapshot, utcnow
from tokenops.dbtime import to_db
from tokenops.errors import PurgeSkipped
from tokenops.locking import MYSQL_NAME_LIMIT, mysql_lock_name, purge_lock, sqlite_lock_path
from tokenops.models import PurgeRun
from tokenops.operations import PurgeRequest, run_purge
from tokenops.purging import is_deadlock

pytestmark = pytest.mark.django_db(transaction=True)

SKIPPED_LINE = "CommandError: Another purge is running on database 'default' since "


@contextmanager
def held_elsewhere(using: str = "default") -> Iterator[None]:
    """Hold the purge lock of ``using`` in another thread (its own connection) for the block."""
    taken, done = threading.Event(), threading.Event()
    outcome: list[bool] = []

    def hold() -> None:
        try:
            with purge_lock(using) as held:
                outcome.append(held)
                taken.set()
                done.wait(30)
        finally:
            connections[using].close()
            taken.set()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait(30)
    try:
        assert outcome == [True]
        yield
    finally:
        done.set()
        thread.join(30)


def holder_row(**fields) -> PurgeRun:
    now = to_db(utcnow())
    values = {"trigger": "command", "started_by": "svc-backup", "database": "default"}
    return PurgeRun.objects.create(started_at=now, heartbeat_at=now, **{**values, **fields})


def test_the_lock_is_exclusive_and_released_at_the_end_of_its_block():
    with held_elsewhere(), purge_lock("default") as held:
        assert held is False
    with purge_lock("default") as held:
        assert held is True
    with purge_lock("default") as again:
        assert again is True


def test_a_purge_finding_the_lock_taken_deletes_nothing_and_records_skipped():
    expired_and_active()
    holder = holder_row()
    before = snapshot()
    with held_elsewhere(), pytest.raises(PurgeSkipped) as caught:
        run_purge(PurgeRequest("default", started_by="ops"))
    assert snapshot() == before
    moment = holder.started_at.strftime("%Y-%m-%d %H:%M:%S")
    assert str(caught.value) == (
        f"Another purge is running on database 'default' since {moment} UTC "
        "(command, svc-backup): nothing was done."
    )
    skipped = PurgeRun.objects.get(outcome="skipped")
    assert (skipped.started_by, skipped.error, skipped.outstanding_deleted) == (
        "ops",
        str(caught.value),
        None,
    )
    assert skipped.finished_at is not None
    # The holder's row is untouched: a skipped run does no housekeeping.
    holder.refresh_from_db()
    assert holder.outcome == "running"


def test_without_a_running_row_the_line_still_says_what_happened():
    expired_and_active()
    with held_elsewhere(), pytest.raises(PurgeSkipped) as caught:
        run_purge(PurgeRequest("default"))
    assert str(caught.value) == (
        "Another purge is running on database 'default': nothing was done."
    )


def test_the_command_exits_75_with_one_line():
    expired_and_active()
    holder_row(trigger="task", started_by="")
    before = snapshot()
    with held_elsewhere():
        result = run_command("token_purge", "--format", "json")
    assert result.code == 75
    assert result.out == ""
    assert result.err.startswith(SKIPPED_LINE)
    assert result.err.endswith(" UTC (Celery task): nothing was done.\n")
    assert result.err.count("\n") == 1
    assert snapshot() == before
    assert PurgeRun.objects.filter(outcome="skipped").count() == 1


def test_a_dry_run_takes_no_lock():
    expired_and_active()
    with held_elsewhere():
        result = run_command("token_purge", "--dry-run", "--format", "json")
    assert (result.code, result.err) == (0, "")
    assert PurgeRun.objects.get().dry_run is True


def test_the_lock_is_free_again_after_a_purge_and_after_a_failed_one():
    expired_and_active()
    assert run_command("token_purge", "-v", "0").code == 0
    assert run_command("token_purge", "--database", "nowhere").code == 2
    with purge_lock("default") as held:
        assert held is True


def test_the_task_succeeds_with_skipped_and_does_not_retry():
    pytest.importorskip("celery")
    from tokenops.tasks import purge_expired_tokens

    expired_and_active()
    before = snapshot()
    with held_elsewhere():
        result = purge_expired_tokens.apply()
    assert result.successful(), result.traceback
    value = result.get()
    assert value["skipped"] is True
    assert value["message"].startswith("Another purge is running on database 'default'")
    assert result.info == value and not result.traceback
    assert snapshot() == before
    run = PurgeRun.objects.get()
    assert (run.trigger, run.outcome) == ("task", "skipped")


def test_the_admin_purge_says_so_and_deletes_nothing():
    user = User.objects.create_user("olga", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_token_hygiene", "run_purge"])
    )
    client = Client()
    client.force_login(user)
    expired_and_active()
    holder_row(trigger="command", started_by="cron")
    before = snapshot()
    with held_elsewhere():
        response = client.post(
            "/admin/tokenops/tokenhygiene/purge/", {"confirm": "yes"}, follow=True
        )
    assert response.status_code == 200
    messages = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert len(messages) == 1
    level, text = messages[0]
    assert level == "warning"
    # The page sees the running purge in the history and starts nothing at all.
    assert text.startswith("A purge is already running on database “default” since ")
    assert text.endswith(" UTC (Command: cron): nothing else was started.")
    assert snapshot() == before
    assert list(PurgeRun.objects.values_list("outcome", flat=True)) == ["running"]


def test_lock_names_and_files():
    assert mysql_lock_name("test_tokenops") == "tokenops.purge:test_tokenops"
    long_name = mysql_lock_name("x" * 200)
    assert len(long_name) <= MYSQL_NAME_LIMIT
    assert long_name != mysql_lock_name("y" * 200)
    if connection.vendor == "sqlite":
        path = sqlite_lock_path("default")
        assert path is not None
        assert path.name.endswith(".tokenops-purge.lock")
        assert path.parent == Path(connection.settings_dict["NAME"]).parent


def test_deadlocks_and_serialization_failures_are_retryable_and_nothing_else():
    def wrapped(cause: BaseException) -> OperationalError:
        error = OperationalError(*cause.args)
        error.__cause__ = cause
        return error

    assert is_deadlock(wrapped(psycopg.errors.DeadlockDetected("deadlock detected")))
    assert is_deadlock(wrapped(psycopg.errors.SerializationFailure("could not serialize")))
    assert not is_deadlock(wrapped(psycopg.errors.LockNotAvailable("lock timeout")))
    assert is_deadlock(OperationalError(1213, "Deadlock found when trying to get lock"))
    assert is_deadlock(OperationalError(1205, "Lock wait timeout exceeded"))
    assert not is_deadlock(OperationalError(2006, "MySQL server has gone away"))
    assert not is_deadlock(OperationalError("database is locked"))


def test_history_deleted_counts_are_the_rowcounts_even_when_others_delete(make_tokens):
    """A purge stopped part way records what its statements deleted, not a drop in counts."""
    now = utcnow()
    make_tokens([now - timedelta(days=2)] * 6, blacklisted=[True, False] * 3)

    class Stop(Exception):
        pass

    # Another writer deletes purgeable rows the purge never reaches, then the purge is stopped.
    class Intruder:
        def start(self, total: int) -> None:
            pass

        def advance(self, rows: int) -> None:
            last = OutstandingToken.objects.order_by("-pk")[:2]
            OutstandingToken.objects.filter(pk__in=[t.pk for t in last]).delete()
            raise Stop

        def close(self) -> None:
            pass

    with pytest.raises(Stop):
        run_purge(PurgeRequest("default", batch_size=2), progress=Intruder())
    run = PurgeRun.objects.get()
    assert run.outcome == "failed"
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (2, 1)
    assert run.outstanding_after == 2
