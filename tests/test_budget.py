"""The time budget: --max-seconds, TOKENOPS["MAX_SECONDS"], the task's max_seconds, and
Celery's soft time limit ending a purge in order."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.test import override_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import make_tokens, orphan_blacklist_rows, run_command, utcnow
from tokenops.app_settings import get_settings
from tokenops.errors import TokenopsError
from tokenops.models import PurgeRun
from tokenops.operations import PurgeRequest, run_purge

pytestmark = pytest.mark.django_db(transaction=True)

# A budget that runs out during the first batch: the purge stops right after it.
TINY = "0.000001"


def population(purgeable: int = 10, blacklisted_every: int = 2, live: int = 3) -> None:
    now = utcnow()
    make_tokens(
        [now - timedelta(days=2)] * purgeable,
        blacklisted=[i % blacklisted_every == 0 for i in range(purgeable)],
        user=None,
    )
    make_tokens([now + timedelta(days=2)] * live, user=None)


def purgeable_now() -> dict[str, int]:
    cutoff = utcnow()
    return {
        "outstanding": OutstandingToken.objects.filter(expires_at__lte=cutoff).count(),
        "blacklisted": BlacklistedToken.objects.filter(token__expires_at__lte=cutoff).count(),
    }


def test_max_seconds_stops_after_the_batch_and_the_next_run_finishes():
    population()
    first = run_command(
        "token_purge", "--batch-size", "4", "--max-seconds", TINY, "--format", "json"
    )
    assert (first.code, first.err) == (0, "")
    data = json.loads(first.out)
    assert data["deleted"] == {"outstanding": 4, "blacklisted": 2}
    assert data["batches"] == 1
    assert data["complete"] is False
    assert data["remaining"] == {"outstanding": 6, "blacklisted": 3} == purgeable_now()
    assert data["max_seconds"] == 1e-06
    run = PurgeRun.objects.get()
    assert (run.outcome, run.complete) == ("ok", False)
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (4, 2)

    second = run_command("token_purge", "--format", "json")
    data = json.loads(second.out)
    assert data["complete"] is True
    assert data["remaining"] == {"outstanding": 0, "blacklisted": 0}
    assert data["deleted"] == {"outstanding": 6, "blacklisted": 3}
    assert PurgeRun.objects.filter(complete=True).count() == 1
    assert OutstandingToken.objects.count() == 3
    assert orphan_blacklist_rows() == 0


def test_the_table_says_what_is_left():
    population()
    result = run_command("token_purge", "--batch-size", "4", "--max-seconds", TINY)
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[1] == (
        "Stopped after the 1e-06 s budget: 6 outstanding tokens and 3 blacklisted tokens "
        "are still purgeable; the next run continues."
    )


def test_a_budget_that_is_not_reached_changes_nothing():
    population()
    result = run_command("token_purge", "--max-seconds", "600", "--format", "json")
    data = json.loads(result.out)
    assert data["complete"] is True and data["max_seconds"] == 600
    assert "Stopped" not in run_command("token_purge").out


def test_the_setting_is_the_default_and_the_option_wins():
    population()
    with override_settings(TOKENOPS={"MAX_SECONDS": 1e-6, "BATCH_SIZE": 4}):
        assert get_settings().max_seconds == 1e-6
        result = run_purge(PurgeRequest("default"))
        assert (result.complete, result.deleted.outstanding) == (False, 4)
        result = run_purge(PurgeRequest("default", max_seconds=600))
        assert result.complete is True


@pytest.mark.parametrize("value", [0, -1, True, "10", float("nan"), float("inf")])
def test_bad_max_seconds_setting_is_one_error(value):
    with override_settings(TOKENOPS={"MAX_SECONDS": value}), pytest.raises(TokenopsError) as e:
        get_settings()
    assert "TOKENOPS['MAX_SECONDS'] must be None or a number of seconds above 0" in str(e.value)


@pytest.mark.parametrize("text", ["0", "-5", "abc", "nan", "inf", "٣"])
def test_bad_max_seconds_option_is_a_usage_error(text):
    result = run_command("token_purge", "--max-seconds", text)
    assert result.code == 2
    assert "expected a number of seconds above 0" in result.err
    assert result.err.count("\n") == 1


def test_a_dry_run_reports_what_remains():
    population()
    data = json.loads(run_command("token_purge", "--dry-run", "--format", "json").out)
    assert data["complete"] is False
    assert data["remaining"] == {"outstanding": 10, "blacklisted": 5}


def test_the_task_takes_max_seconds():
    pytest.importorskip("celery")
    from tokenops.tasks import purge_expired_tokens

    population()
    result = purge_expired_tokens.apply(kwargs={"max_seconds": 1e-6, "batch_size": 4})
    assert result.successful(), result.traceback
    value = result.get()
    assert (value["skipped"], value["complete"]) == (False, False)
    assert value["remaining"] == {"outstanding": 6, "blacklisted": 3}
    bad = purge_expired_tokens.apply(kwargs={"max_seconds": "10"})
    assert bad.failed()
    assert "max_seconds must be a number of seconds above 0" in str(bad.result)


@pytest.mark.skipif(
    sys.platform == "win32", reason="no SIGUSR1: Celery has no soft time limit there"
)
def test_a_soft_time_limit_ends_the_purge_in_order_with_exact_counts(caplog):
    """Celery's soft time limit as a prefork child gets it: billiard's SIGUSR1 handler.

    The handler raises SoftTimeLimitExceeded wherever the signal lands; during the purge
    the task turns it into a flag (raised inside a COMMIT, it broke the run's history on
    MariaDB about one run in three).
    """
    pytest.importorskip("celery")
    from billiard.pool import SIG_SOFT_TIMEOUT, soft_timeout_sighandler

    from tokenops.tasks import purge_expired_tokens

    population(purgeable=3000, blacklisted_every=3)
    main = threading.main_thread().ident
    stop = threading.Event()

    def time_limit() -> None:
        """Send the signal once the purge is well under way (own connection: own thread)."""
        try:
            while not stop.is_set():
                if OutstandingToken.objects.count() <= 3000 + 3 - 50:
                    signal.pthread_kill(main, SIG_SOFT_TIMEOUT)
                    return
                time.sleep(0.005)
        finally:
            connections.close_all()

    previous = signal.signal(SIG_SOFT_TIMEOUT, soft_timeout_sighandler)
    watcher = threading.Thread(target=time_limit)
    watcher.start()
    try:
        result = purge_expired_tokens.apply(kwargs={"batch_size": 1})
        assert signal.getsignal(SIG_SOFT_TIMEOUT) is soft_timeout_sighandler
    finally:
        stop.set()
        watcher.join(30)
        signal.signal(SIG_SOFT_TIMEOUT, previous)
    assert result.successful(), result.traceback
    value = result.get()
    assert value["complete"] is False
    left = purgeable_now()
    assert value["remaining"] == left
    assert value["deleted"]["outstanding"] == 3000 - left["outstanding"]
    assert value["deleted"]["blacklisted"] == 1000 - left["blacklisted"]
    run = PurgeRun.objects.get()
    assert (run.outcome, run.complete) == ("ok", False)
    assert run.outstanding_deleted == 3000 - left["outstanding"]
    assert run.blacklisted_deleted == 1000 - left["blacklisted"]
    assert orphan_blacklist_rows() == 0
    assert "token purge task on 'default' reached its soft time limit" in caplog.messages
