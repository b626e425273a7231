"""SQLite: batches grow while nobody else writes and shrink as soon as someone does.

A real second writer (a thread with its own sqlite3 connection and Django's 5 s busy
timeout) commits token rows to the same file while the purge runs. The engine's trace
says how each batch was sized; nothing here depends on how long anything took.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import make_tokens, orphan_blacklist_rows, stored, utcnow
from tokenops import purging
from tokenops.app_settings import get_settings
from tokenops.cutoff import safe_cutoff
from tokenops.errors import TokenopsError
from tokenops.operations import PurgeRequest, run_purge

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "secondary"])

EXPIRED = 15_000
BLACKLISTED_EVERY = 3
# Targets chosen so that the sizes cannot depend on the machine: the short target sizes
# every batch at MIN_BATCH (it would take 1,000,000 rows/s to exceed it), the idle one
# lets every batch double (GROWTH) until the rows run out.
SHORT = 0.0001
IDLE = 30.0


class Writer(threading.Thread):
    """The app: inserts live token rows, one transaction each, until told to stop."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.first_commit = threading.Event()
        self.jtis: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        expires = stored(utcnow() + timedelta(days=1)).isoformat(" ")
        try:
            while not self.stop.is_set():
                jti = uuid.uuid4().hex
                try:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute(
                        "INSERT INTO token_blacklist_outstandingtoken "
                        "(jti, token, created_at, expires_at, user_id) VALUES (?, ?, ?, ?, NULL)",
                        (jti, "app.token.signature", expires, expires),
                    )
                    db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.jtis.append(jti)
                self.first_commit.set()
                self.stop.wait(0.005)
        finally:
            db.close()


def test_batches_shrink_while_another_connection_writes_and_grow_when_it_stops(monkeypatch):
    # Stay short until nobody has committed for 0.3 s (5 s by default): the writer commits
    # every few milliseconds, so it is seen at every check while it runs.
    monkeypatch.setattr(purging, "SQLITE_QUIET_SECONDS", 0.3)
    now = utcnow()
    make_tokens(
        [now - timedelta(days=2)] * EXPIRED,
        blacklisted=[i % BLACKLISTED_EVERY == 0 for i in range(EXPIRED)],
        using="secondary",
    )
    make_tokens([now + timedelta(days=2)] * 10, blacklisted=True, using="secondary")
    writer = Writer(connections["secondary"].settings_dict["NAME"])
    commits_at_start: list[int] = []
    commits_at_stop: list[int] = []

    def on_batch(rows: int) -> None:
        # Called after each commit, while the purge holds no lock.
        done = len(trace_rows)
        trace_rows.append(rows)
        if done == 2:  # after three idle batches, the app starts writing
            writer.start()
            assert writer.first_commit.wait(10), writer.errors
            commits_at_start.append(len(writer.jtis))
        elif done == 9:  # seven batches later it stops
            writer.stop.set()
            writer.join(10)
            commits_at_stop.append(len(writer.jtis))

    trace_rows: list[int] = []
    try:
        stats = purging.delete_purgeable(
            "secondary",
            safe_cutoff(timedelta(0)),
            batch_seconds=SHORT,
            batch_seconds_idle=IDLE,
            on_batch=on_batch,
        )
    finally:
        writer.stop.set()
        if writer.is_alive():
            writer.join(10)

    trace = stats.trace
    assert [b.rows for b in trace] == trace_rows
    assert sum(b.rows for b in trace) == stats.deleted.outstanding == EXPIRED
    assert stats.deleted.blacklisted == len(range(0, EXPIRED, BLACKLISTED_EVERY))
    assert all(b.pause == purging.SQLITE_PAUSE for b in trace)

    # Nobody else writes: long target, each batch twice the last.
    idle = trace[:3]
    assert [(b.rows, b.target, b.contended) for b in idle] == [
        (purging.FIRST_BATCH, IDLE, False),
        (2 * purging.FIRST_BATCH, IDLE, False),
        (4 * purging.FIRST_BATCH, IDLE, False),
    ]
    # The app writes: from the next batch on, the short target and the smallest batches.
    busy = trace[3:10]
    assert all(b.contended and b.target == SHORT for b in busy), busy
    assert all(b.rows <= purging.MIN_BATCH for b in busy), busy
    # The app's commits got through between the batches, none failed.
    assert writer.errors == []
    assert commits_at_stop[0] > commits_at_start[0]
    # Quiet again: back to the long target, growing twice a step.
    after = [b for b in trace[10:] if not b.contended]
    assert len(after) >= 3, trace[10:]
    assert all(b.target == IDLE for b in after)
    growing = [(a.rows, b.rows) for a, b in itertools.pairwise(after)]
    assert all(later == 2 * earlier for earlier, later in growing[:-1]), growing
    # Contended batches may go on past trace[10] (the writer's last commits): all count.
    assert stats.longest_contended == max(b.seconds for b in trace if b.contended)
    assert stats.longest_contended >= max(b.seconds for b in busy)

    # Every row the app wrote is there, the purge left both tables consistent.
    rows = OutstandingToken.objects.using("secondary")
    assert rows.filter(jti__in=writer.jtis).count() == len(writer.jtis)
    assert rows.count() == 10 + len(writer.jtis)
    assert BlacklistedToken.objects.using("secondary").count() == 10
    assert orphan_blacklist_rows("secondary") == 0


def test_a_quiet_file_uses_the_idle_target_and_other_backends_never_do():
    now = utcnow()
    make_tokens([now - timedelta(days=2)] * 7000, using="secondary")
    stats = purging.delete_purgeable(
        "secondary", safe_cutoff(timedelta(0)), batch_seconds=SHORT, batch_seconds_idle=IDLE
    )
    assert [(b.rows, b.contended) for b in stats.trace] == [
        (1000, False),
        (2000, False),
        (4000, False),
    ]
    assert stats.longest_contended == 0.0


def test_the_idle_target_is_never_shorter_than_the_short_one():
    make_tokens([utcnow() - timedelta(days=2)] * 3000, using="secondary")
    stats = purging.delete_purgeable(
        "secondary", safe_cutoff(timedelta(0)), batch_seconds=SHORT * 2, batch_seconds_idle=SHORT
    )
    assert {b.target for b in stats.trace} == {SHORT * 2}


def test_the_idle_target_comes_from_tokenops(settings):
    """The orchestrator reads TOKENOPS and hands the target to the engine (which reads none)."""
    settings.TOKENOPS = {"BATCH_SECONDS_IDLE": 7}
    make_tokens([utcnow() - timedelta(days=2)] * 1500, using="secondary")
    stats = run_purge(PurgeRequest("secondary")).stats
    assert {b.target for b in stats.trace} == {7.0}
    settings.TOKENOPS = {}
    assert get_settings().batch_seconds_idle is None  # the engine's default then


@pytest.mark.parametrize("value", [0, 61, "1", True])
def test_a_bad_idle_target_names_the_key(settings, value):
    settings.TOKENOPS = {"BATCH_SECONDS_IDLE": value}
    with pytest.raises(TokenopsError, match=r"TOKENOPS\['BATCH_SECONDS_IDLE'\] must be"):
        get_settings()
