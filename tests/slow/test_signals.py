"""SIGINT and SIGTERM at each phase of a real command process: exit 130, one line, a true history.

Each test puts the process in a known phase from outside and only then sends the signal:
stdout is a pipe that is already full (the result is being written), or the SQLite file
is locked by the test (the purge waits for its first write, before any history row), or
the purge is part way through its batches (the row count dropped). Linux /proc tells
when the process sleeps in the write or in SQLite's busy wait.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys

import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import (
    database_url,
    expired_and_live,
    holds_file_lock,
    kernel_wait,
    orphan_blacklist_rows,
    project_env,
    signal_when_writing,
    start_into_full_pipe,
    start_manage,
    wait_until,
)
from tokenops.locking import sqlite_lock_path
from tokenops.models import PurgeRun

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="phases seen in /proc"),
]

SIGNALS = [signal.SIGINT, signal.SIGTERM]
PURGE_INTERRUPTED = (
    "CommandError: Interrupted: every finished batch is committed and the tables are "
    "consistent; run token_purge again to finish.\n"
)
RESULT_NOT_WRITTEN = (
    "CommandError: Interrupted while writing the result: the purge finished and its history "
    "row says so, but the result was not written in full.\n"
)
OUTPUT_NOT_WRITTEN = (
    "CommandError: Interrupted while writing the output: it was not written in full.\n"
)
PREFILLED = b"x" * 65536


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("format", ["table", "json"])
def test_signal_while_the_purge_result_is_written_says_it_was_not(sig, format):
    expired_and_live(40)
    process, read_end = start_into_full_pipe(
        "token_purge", "--format", format, env=project_env(database_url())
    )

    # Nothing of the result got past the full buffer.
    assert signal_when_writing(process, read_end, sig) == (130, RESULT_NOT_WRITTEN, PREFILLED)
    # The purge itself finished, and its history row says so.
    (run,) = PurgeRun.objects.all()
    assert (run.outcome, run.error, run.complete) == ("ok", "", True)
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (40, 40)
    assert OutstandingToken.objects.count() == 5


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("args", [(), ("--format", "json"), ("--check",)])
def test_signal_while_the_report_is_written_says_it_was_not(sig, args):
    expired_and_live(3)
    process, read_end = start_into_full_pipe("token_report", *args, env=project_env(database_url()))

    assert signal_when_writing(process, read_end, sig) == (130, OUTPUT_NOT_WRITTEN, PREFILLED)
    assert not PurgeRun.objects.exists()


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_before_the_first_write_leaves_no_history_row(sig, sqlite_file):
    expired_and_live(20)
    lock_file = sqlite_lock_path("default")
    assert lock_file is not None
    # Another connection holds the file: the purge's first write (its history row) waits.
    holder = sqlite3.connect(sqlite_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        process = start_manage("token_purge", env=project_env(database_url()))
        wait_until(
            lambda: (
                process.poll() is not None
                or (
                    holds_file_lock(process.pid, lock_file)
                    and kernel_wait(process.pid).endswith("nanosleep")
                )
            ),
            timeout=120,
            what="the purge waiting for the SQLite lock",
        )
        assert process.poll() is None, process.communicate()
        process.send_signal(sig)
        # SQLite's busy wait (5 s) ends first; then the signal is handled.
        out, err = process.communicate(timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert (process.returncode, out, err) == (130, "", PURGE_INTERRUPTED)
    assert not PurgeRun.objects.exists()
    assert OutstandingToken.objects.count() == 25


@pytest.mark.parametrize(
    ("sig", "error"),
    [(signal.SIGINT, "Interrupted (Ctrl+C or SIGINT)."), (signal.SIGTERM, "Stopped by SIGTERM.")],
)
def test_signal_between_batches_records_what_was_deleted(sig, error):
    expired_and_live(1500)
    process = start_manage(
        "token_purge", "--batch-size", "1", "--format", "json", env=project_env(database_url())
    )
    wait_until(
        lambda: OutstandingToken.objects.count() <= 1500 or process.poll() is not None,
        timeout=120,
        what="the purge to delete some rows",
    )
    assert process.poll() is None, "the purge finished before the test could interrupt it"
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)

    assert (process.returncode, out, err) == (130, "", PURGE_INTERRUPTED)
    left = OutstandingToken.objects.count()
    assert 5 < left < 1505
    assert orphan_blacklist_rows() == 0
    assert BlacklistedToken.objects.count() == left - 5
    (run,) = PurgeRun.objects.all()
    assert (run.outcome, run.error, run.complete) == ("interrupted", error, False)
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (1505 - left, 1505 - left)
    assert (run.outstanding_after, run.blacklisted_after) == (left, left - 5)

    done = start_manage("token_purge", "--format", "json", env=project_env(database_url()))
    out, err = done.communicate(timeout=120)
    assert (done.returncode, err) == (0, "")
    assert json.loads(out)["deleted"]["outstanding"] == left - 5
