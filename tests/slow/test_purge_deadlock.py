"""A batch chosen as a deadlock victim is rolled back, tried again, and the purge finishes.

``_delete_batch`` retries a batch whose transaction the server aborted to break a deadlock.
A mock raising a fake error would only prove the loop; this makes the server itself find a
real lock cycle between the purge and a second session (T2, the app), with the purge as the
victim, on PostgreSQL and on MariaDB/MySQL. SQLite has no deadlocks (a second writer is told
"database is locked"), so it is skipped there.

The cycle, deterministic on both servers:

1. T2 takes a share lock on the outstanding row B of the first batch (B is purgeable and not
   blacklisted). A share lock lets the batch's first DELETE read B in its subquery (InnoDB
   may lock the rows a DELETE's subquery reads) but not delete it.
2. The purge runs its first batch: the first DELETE removes (and locks) the blacklist row of
   token A, the second DELETE waits for B. The test waits until the server shows it there.
3. T2 updates A's blacklist row: it waits for the purge, the purge waits for T2.

Who is the victim: PostgreSQL aborts the session whose ``deadlock_timeout`` fires while the
cycle exists; T2 sets its own to 10 s and enters its wait well within the purge's default
1 s. InnoDB aborts the transaction with the smaller weight (rows modified and locked); T2
first updates 500 unrelated live rows, the purge has modified a handful. None of those 500
is blacklisted: on a small table MariaDB runs the first DELETE as a scan of the whole
blacklist table, share-locking the outstanding row of every blacklisted token it reads,
so it would wait for T2 there, before the cycle. Then T2 rolls back, and the retried
batch finds nothing in its way. T2 must get no error at all: otherwise T2 was the victim
and nothing about the retry was shown.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import make_tokens, orphan_blacklist_rows, utcnow, wait_until
from tokenops.models import PurgeRun
from tokenops.operations import PurgeRequest, PurgeResult, run_purge
from tokenops.purging import DEADLOCK_RETRIES, Deleted

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason="SQLite has no deadlocks: a second writer gets 'database is locked'",
    ),
]

EXPIRED = 20  # every other one blacklisted
BATCH = 10
LIVE = 500  # what T2 updates first (its weight on InnoDB): none of them blacklisted
LIVE_BLACKLISTED = 5
A_INDEX = 0  # blacklisted, in the first batch
B_INDEX = 5  # not blacklisted, in the first batch, after A in primary-key order
T2_DEADLOCK_TIMEOUT = "10s"  # PostgreSQL; the purge's session keeps the default 1 s
T2_LOCK_TIMEOUT_SECONDS = 30  # a broken setup fails instead of hanging
WAIT = 30.0

SHARE_LOCK = {
    "postgresql": "SELECT id FROM token_blacklist_outstandingtoken WHERE id = %s FOR SHARE",
    "mysql": "SELECT id FROM token_blacklist_outstandingtoken WHERE id = %s LOCK IN SHARE MODE",
}
SESSION_SETUP = {
    "postgresql": [
        f"SET deadlock_timeout = '{T2_DEADLOCK_TIMEOUT}'",
        f"SET lock_timeout = '{T2_LOCK_TIMEOUT_SECONDS}s'",
    ],
    "mysql": [f"SET SESSION innodb_lock_wait_timeout = {T2_LOCK_TIMEOUT_SECONDS}"],
}
SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
# The purge's session, waiting in its batch's outstanding-row DELETE for a lock T2 holds.
BLOCKED_PURGE = {
    "postgresql": """
        SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'
          AND query LIKE %s AND %s = ANY(pg_blocking_pids(pid))
    """,
    # Not information_schema.innodb_trx: it left the waiting purge out while another session
    # on the server ran a large transaction. While T2 holds B, the batch's outstanding DELETE
    # cannot end without waiting for it, so the statement running is enough.
    "mysql": """
        SELECT id FROM information_schema.processlist
        WHERE db = DATABASE() AND command = 'Query' AND info LIKE %s AND id <> %s
    """,
}
OUTSTANDING_DELETE = {
    "postgresql": 'DELETE FROM "token_blacklist_outstandingtoken"%',
    "mysql": "DELETE FROM `token_blacklist_outstandingtoken`%",
}


class Session:
    """T2: its own connection to the test database, used from one thread at a time."""

    def __init__(self) -> None:
        self.db: BaseDatabaseWrapper = connections.create_connection("default")
        # Statements run from the test's thread and from the thread that waits on a lock.
        self.db.inc_thread_sharing()
        self.vendor = self.db.vendor
        for statement in SESSION_SETUP[self.vendor]:
            self.execute(statement)
        self.id = self.fetch(SESSION_ID[self.vendor])[0][0]

    def execute(self, sql: str, params: list[Any] | None = None) -> int:
        with self.db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.db.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def close(self) -> None:
        self.db.close()
        self.db.dec_thread_sharing()


class PurgeThread(threading.Thread):
    """``run_purge`` on this thread's own connection, closed at the end."""

    def __init__(self, request: PurgeRequest) -> None:
        super().__init__(daemon=True)
        self.request = request
        self.result: PurgeResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = run_purge(self.request)
        except BaseException as exc:  # the test reports it
            self.error = exc
        finally:
            connections["default"].close()


def blocked_purge(t2: Session) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(BLOCKED_PURGE[t2.vendor], [OUTSTANDING_DELETE[t2.vendor], t2.id])
        return list(cursor.fetchall())


def test_a_batch_chosen_as_deadlock_victim_is_retried_and_the_purge_finishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenops.purging")
    now = utcnow()
    expired = make_tokens(
        [now - timedelta(days=30)] * EXPIRED, blacklisted=[i % 2 == 0 for i in range(EXPIRED)]
    )
    heavy = make_tokens([now + timedelta(days=1)] * LIVE)
    live = heavy + make_tokens([now + timedelta(days=1)] * LIVE_BLACKLISTED, blacklisted=True)
    a, b = expired[A_INDEX], expired[B_INDEX]
    assert a.pk < b.pk <= sorted(row.pk for row in expired)[BATCH - 1] < min(r.pk for r in live)
    assert not BlacklistedToken.objects.filter(token=b).exists()
    a_blacklist_pk = BlacklistedToken.objects.get(token=a).pk
    live_tokens = dict(
        OutstandingToken.objects.filter(pk__in=[row.pk for row in live]).values_list("pk", "token")
    )

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'")
            # Milliseconds: the purge's session must look for the cycle long before T2's.
            assert cursor.fetchone()[0] <= 1000

    t2 = Session()
    touched: list[int] = []
    t2_errors: list[BaseException] = []

    def touch_a() -> None:
        try:
            touched.append(
                t2.execute(
                    "UPDATE token_blacklist_blacklistedtoken SET blacklisted_at = blacklisted_at "
                    "WHERE id = %s",
                    [a_blacklist_pk],
                )
            )
        except BaseException as exc:  # asserted below
            t2_errors.append(exc)
        finally:
            t2.db.rollback()

    purge = PurgeThread(PurgeRequest("default", batch_size=BATCH, older_than=timedelta(days=1)))
    toucher = threading.Thread(target=touch_a, daemon=True)
    try:
        t2.db.set_autocommit(False)
        weight = t2.execute(
            "UPDATE token_blacklist_outstandingtoken SET token = %s WHERE id >= %s AND id <= %s",
            ["t2.token.signature", min(r.pk for r in heavy), max(r.pk for r in heavy)],
        )
        assert weight == LIVE
        assert t2.fetch(SHARE_LOCK[t2.vendor], [b.pk]) == [(b.pk,)]
        purge.start()
        wait_until(lambda: blocked_purge(t2), timeout=WAIT, what="the purge waiting for row B")
        toucher.start()
        toucher.join(WAIT)
        purge.join(WAIT)
    finally:
        if toucher.ident is None:  # the setup failed before T2's second lock: let the purge go
            t2.db.rollback()
        for thread in (toucher, purge):
            if thread.ident is not None:
                thread.join(WAIT)
        t2.close()

    assert not purge.is_alive() and not toucher.is_alive()
    # T2 was not the victim: its update waited for the purge's rollback, then found A's row.
    assert t2_errors == []
    assert touched == [1]

    assert purge.error is None, repr(purge.error)
    result = purge.result
    assert result is not None
    assert result.before.outstanding.purgeable == EXPIRED
    assert result.before.blacklisted.purgeable == EXPIRED // 2
    assert result.deleted == Deleted(outstanding=EXPIRED, blacklisted=EXPIRED // 2)
    assert result.complete
    assert result.stats.batches == EXPIRED // BATCH

    retries = [r for r in caplog.records if r.name == "tokenops.purging"]
    assert len(retries) == 1, [r.getMessage() for r in retries]
    message = retries[0].getMessage()
    assert message.startswith("purge batch rolled back (")
    assert message.endswith(f"); retry 1 of {DEADLOCK_RETRIES}")
    assert "deadlock" in message.lower(), message

    # Exactly the purgeable rows went; the live ones are as they were (T2 rolled back).
    assert dict(OutstandingToken.objects.values_list("pk", "token")) == live_tokens
    assert BlacklistedToken.objects.count() == LIVE_BLACKLISTED
    assert orphan_blacklist_rows() == 0

    run = PurgeRun.objects.get()
    assert run.outcome == PurgeRun.Outcome.OK, run.error
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (EXPIRED, EXPIRED // 2)
    assert run.complete
