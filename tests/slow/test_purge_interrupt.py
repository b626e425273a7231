"""A real token_purge process, interrupted part way, leaves a consistent database.

The purge runs as ``python manage.py token_purge --batch-size 1`` on this run's test
database (SQLite file, PostgreSQL or MariaDB). The test polls the row count and kills the
process once it has committed some batches: SIGKILL (no cleanup at all) several times,
then SIGINT (Ctrl+C: exit code 130 and one line). After each: no blacklist row without
its outstanding row, no non-purgeable row gone, no surviving row lost its blacklist row;
the next run finishes the job.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
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

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

PURGEABLE = 3000
LIVE = 600
INTERRUPTED_LINE = (
    "CommandError: Interrupted: every finished batch is committed and the tables are "
    "consistent; run token_purge again to finish.\n"
)


def token_pks(expiries: list, blacklisted: list[bool]) -> list[int]:
    """Rows of a deleted user (no user row to keep), fast; their primary keys in order."""
    return [row.pk for row in make_tokens(expiries, blacklisted=blacklisted, user=None)]


class Population:
    def __init__(self) -> None:
        now = utcnow()
        self.purgeable = set(
            token_pks(
                [now - timedelta(days=1, minutes=i) for i in range(PURGEABLE)],
                blacklisted=[i % 2 == 0 for i in range(PURGEABLE)],
            )
        )
        # Live rows interleaved in primary-key order with a second purgeable block.
        mixed = token_pks(
            [
                now + timedelta(hours=1) if i % 2 else now - timedelta(days=2)
                for i in range(LIVE * 2)
            ],
            blacklisted=[i % 4 < 2 for i in range(LIVE * 2)],
        )
        self.live = set(mixed[1::2])
        self.purgeable |= set(mixed[0::2])
        self.blacklisted = set(BlacklistedToken.objects.values_list("token_id", flat=True))

    def remaining(self) -> set[int]:
        return set(OutstandingToken.objects.values_list("pk", flat=True))

    def assert_consistent(self) -> set[int]:
        remaining = self.remaining()
        assert orphan_blacklist_rows() == 0
        assert self.live <= remaining, "a non-purgeable row is gone"
        assert remaining <= self.live | self.purgeable
        still_blacklisted = set(BlacklistedToken.objects.values_list("token_id", flat=True))
        # A half-done batch would leave an outstanding row without its blacklist row:
        # a logged-out token made valid again.
        assert still_blacklisted == self.blacklisted & remaining
        return remaining


def start_slow_purge(url: str) -> subprocess.Popen:
    return start_manage(
        "token_purge", "--batch-size", "1", "--format", "json", env=project_env(url)
    )


def signal_after_progress(process: subprocess.Popen, sig: int, rows_at_most: int):
    """Send ``sig`` once the purge has brought the table down to ``rows_at_most`` rows."""
    wait_until(
        lambda: OutstandingToken.objects.count() <= rows_at_most or process.poll() is not None,
        timeout=120,
        what=f"the purge to get down to {rows_at_most} rows",
    )
    assert process.poll() is None, "the purge finished before the test could interrupt it"
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def test_killed_and_interrupted_purges_leave_consistent_tables_and_next_run_finishes():
    population = Population()
    url = database_url()
    remaining = population.remaining()

    for round_number in range(3):
        process = start_slow_purge(url)
        code, out, _err = signal_after_progress(
            process, signal.SIGKILL, len(remaining) - 5 - 10 * round_number
        )
        assert code == -signal.SIGKILL
        assert out == ""
        now_remaining = population.assert_consistent()
        assert now_remaining < remaining, "the killed purge committed nothing"
        assert now_remaining & population.purgeable, "nothing left for the next run"
        remaining = now_remaining

    process = start_slow_purge(url)
    code, out, err = signal_after_progress(process, signal.SIGINT, len(remaining) - 5)
    assert (code, out, err) == (130, "", INTERRUPTED_LINE)
    remaining_after_sigint = population.assert_consistent()
    assert remaining_after_sigint < remaining
    left = remaining_after_sigint & population.purgeable
    assert left

    done = run_manage("token_purge", "--format", "json", env=project_env(url))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    data = json.loads(done.stdout)
    assert data["deleted"]["outstanding"] == len(left)
    assert data["after"]["outstanding"] == len(population.live)
    assert population.assert_consistent() == population.live
