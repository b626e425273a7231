"""One purge per database at a time, with real processes, on this run's database.

Real ``python manage.py token_purge`` processes on the test database (SQLite file,
PostgreSQL or MariaDB), the Celery task run in this process with ``.apply()``, and the
admin page through Django's test client, all against the same database. A small fixed
``--batch-size`` makes a purge of a few hundred rows last a few seconds.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import (
    database_url,
    make_tokens,
    orphan_blacklist_rows,
    project_env,
    run_manage,
    start_manage,
    utcnow,
    wait_until,
)
from tokenops.models import PurgeRun

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PURGEABLE = 600
LIVE = 50
# Rows per batch so that a purge of PURGEABLE rows lasts a few seconds: SQLite pauses
# 0.1 s after each batch, the servers do not.
SLOW_BATCH = {"sqlite": "20"}.get(connection.vendor, "1")
SKIPPED = re.compile(
    r"CommandError: Another purge is running on database 'default'"
    r"( since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((command|Celery task|admin)[^)]*\))?"
    r": nothing was done\.\n"
)


def populate(purgeable: int = PURGEABLE) -> dict[str, int]:
    now = utcnow()
    make_tokens(
        [now - timedelta(days=2, minutes=i) for i in range(purgeable)],
        blacklisted=[i % 3 == 0 for i in range(purgeable)],
        user=None,
    )
    make_tokens([now + timedelta(days=1)] * LIVE, blacklisted=True, user=None)
    return purgeable_now()


def purgeable_now() -> dict[str, int]:
    cutoff = utcnow()
    return {
        "outstanding": OutstandingToken.objects.filter(expires_at__lte=cutoff).count(),
        "blacklisted": BlacklistedToken.objects.filter(token__expires_at__lte=cutoff).count(),
    }


def env() -> dict[str, str]:
    return project_env(database_url())


def start_purge(*args: str) -> subprocess.Popen:
    return start_manage(
        "token_purge", "--batch-size", SLOW_BATCH, "--format", "json", *args, env=env()
    )


def wait_for_running_purge(process: subprocess.Popen, purgeable: int = PURGEABLE) -> None:
    """Until the purge has a "running" row and has deleted something (it holds the lock)."""
    wait_until(
        lambda: (
            process.poll() is not None
            or (
                PurgeRun.objects.filter(outcome="running").exists()
                and purgeable_now()["outstanding"] < purgeable
            )
        ),
        timeout=60,
        what="the purge to start deleting",
    )
    assert process.poll() is None, process.communicate()


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_two_purges_started_together_one_deletes_the_other_skips():
    purgeable = populate()
    processes = [start_purge(), start_purge()]
    results = sorted(finish(p) for p in processes)
    (code_a, out_a, err_a), (code_b, out_b, err_b) = results
    assert (code_a, code_b) == (0, 75), results
    assert err_a == ""
    assert json.loads(out_a)["deleted"] == purgeable
    assert out_b == ""
    assert SKIPPED.fullmatch(err_b), err_b
    assert sorted(PurgeRun.objects.values_list("outcome", flat=True)) == ["ok", "skipped"]
    skipped = PurgeRun.objects.get(outcome="skipped")
    assert skipped.error == err_b.removeprefix("CommandError: ").rstrip("\n")
    assert (skipped.outstanding_deleted, skipped.blacklisted_deleted) == (None, None)
    assert purgeable_now() == {"outstanding": 0, "blacklisted": 0}
    assert orphan_blacklist_rows() == 0


def test_many_starters_at_once_never_fail():
    """MariaDB deadlocked two overlapping purges every time; now one runs, the others skip."""
    for _round in range(2):
        purgeable = populate(200)
        processes = [start_purge() for _ in range(3)]
        results = [finish(p) for p in processes]
        codes = sorted(code for code, _out, _err in results)
        assert set(codes) <= {0, 75} and codes[0] == 0, results
        deleted = [json.loads(out)["deleted"] for code, out, _err in results if code == 0]
        assert sum(d["outstanding"] for d in deleted) == purgeable["outstanding"]
        assert sum(d["blacklisted"] for d in deleted) == purgeable["blacklisted"]
        for code, _out, err in results:
            assert code == 0 or SKIPPED.fullmatch(err), err
    assert not PurgeRun.objects.filter(outcome="failed").exists()


def test_the_task_during_a_command_purge_succeeds_as_skipped():
    pytest.importorskip("celery")
    from tokenops.tasks import purge_expired_tokens

    purgeable = populate()
    command = start_purge()
    wait_for_running_purge(command)
    result = purge_expired_tokens.apply()
    assert command.poll() is None, "the command finished before the task ran"
    assert result.successful(), result.traceback
    assert result.get()["skipped"] is True
    code, out, err = finish(command)
    assert (code, err) == (0, "")
    assert json.loads(out)["deleted"] == purgeable
    task_run = PurgeRun.objects.get(trigger="task")
    assert task_run.outcome == "skipped"
    assert "(command" in task_run.error


def test_the_admin_purge_during_a_command_purge_deletes_nothing():
    user = User.objects.create_user("olga", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_token_hygiene", "run_purge"])
    )
    client = Client()
    client.force_login(user)
    purgeable = populate()
    command = start_purge()
    wait_for_running_purge(command)
    response = client.post("/admin/tokenops/tokenhygiene/purge/", {"confirm": "yes"}, follow=True)
    assert command.poll() is None, "the command finished before the admin purge ran"
    messages = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert len(messages) == 1 and messages[0][0] == "warning", messages
    # The page sees the command's running row and starts nothing at all.
    assert messages[0][1].startswith("A purge is already running on database “default” since ")
    assert messages[0][1].endswith("): nothing else was started.")
    code, out, _err = finish(command)
    assert code == 0
    # Every purgeable row went by the command; the admin deleted none and wrote no row.
    assert json.loads(out)["deleted"] == purgeable
    assert not PurgeRun.objects.filter(trigger="admin").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_holder_frees_the_lock_at_once():
    populate()
    holder = start_purge()
    wait_for_running_purge(holder)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=60)
    left = purgeable_now()
    assert 0 < left["outstanding"] < PURGEABLE
    done = run_manage("token_purge", "--format", "json", env=env(), timeout=120)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    data = json.loads(done.stdout)
    assert data["deleted"] == left
    assert data["complete"] is True
    assert orphan_blacklist_rows() == 0


def test_max_seconds_stops_a_large_purge_and_the_next_run_finishes():
    populate()
    first = run_manage(
        "token_purge",
        "--batch-size",
        SLOW_BATCH,
        "--max-seconds",
        "1",
        "--format",
        "json",
        env=env(),
    )
    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    data = json.loads(first.stdout)
    left = purgeable_now()
    assert data["complete"] is False
    assert data["remaining"] == left
    assert left["outstanding"] > 0
    assert data["deleted"]["outstanding"] == PURGEABLE - left["outstanding"]
    run = PurgeRun.objects.get()
    assert (run.outcome, run.complete) == ("ok", False)
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (
        data["deleted"]["outstanding"],
        data["deleted"]["blacklisted"],
    )
    second = run_manage("token_purge", "--format", "json", env=env())
    data = json.loads(second.stdout)
    assert (data["complete"], data["deleted"]) == (True, left)
    assert purgeable_now() == {"outstanding": 0, "blacklisted": 0}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_interrupted_run_records_its_own_rowcounts_while_others_delete():
    """Another writer deletes purgeable rows while the purge runs; the purge is interrupted.

    The history must show what the purge's own statements deleted: the drop in purgeable
    rows minus what the other writer deleted (its rowcounts, counted here).
    """
    # Four times the usual rows: the skipped purge's start-up must not outlast this one.
    start = populate(PURGEABLE * 4)
    purge = start_purge()
    wait_for_running_purge(purge, start["outstanding"])
    # A second purge meanwhile: it is skipped and deletes nothing.
    skipped = run_manage("token_purge", env=env(), timeout=120)
    assert skipped.returncode == 75, skipped.stderr
    # Another writer takes the newest purgeable rows (the purge goes in primary-key order).
    newest = list(
        OutstandingToken.objects.filter(expires_at__lte=utcnow())
        .order_by("-pk")
        .values_list("pk", flat=True)[:40]
    )
    other_blacklisted = BlacklistedToken.objects.filter(token_id__in=newest).delete()[0]
    other_outstanding = OutstandingToken.objects.filter(pk__in=newest).delete()[0]
    # Rows still to go: the purge is deleting, not exiting (a signal while the interpreter
    # shuts down ends it before any handler can run).
    assert purgeable_now()["outstanding"] > 100, "the purge was nearly done"
    assert purge.poll() is None, "the purge finished before it could be interrupted"
    purge.send_signal(signal.SIGINT)
    code, _out, err = finish(purge)
    assert code == 130, err
    left = purgeable_now()
    run = PurgeRun.objects.get(outcome="interrupted")
    assert run.outstanding_deleted == (
        start["outstanding"] - left["outstanding"] - other_outstanding
    )
    assert run.blacklisted_deleted == (
        start["blacklisted"] - left["blacklisted"] - other_blacklisted
    )
    assert run.outstanding_deleted > 0
    assert orphan_blacklist_rows() == 0
