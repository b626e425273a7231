"""The deletion engine: batch sizing, batches in primary-key order, SQLite pragmas, binding."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest
from django.db import connection, connections
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import (
    database_url,
    driver_error,
    make_orphans,
    make_tokens,
    orphan_blacklist_rows,
    other_driver_errors,
    out_of_space_errors,
    project_env,
    run_manage,
    sqlite_full_error,
    utcnow,
)
from tokenops import purging
from tokenops.cutoff import safe_cutoff

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "secondary"])

DAY = timedelta(days=1)


# next_batch_size: aim each transaction at the target from the rate just measured.


def test_next_batch_size_aims_at_the_target_duration():
    # 1000 rows in 0.25 s: 4000 rows/s, so 0.5 s is 2000 rows (the 2x cap allows it).
    assert purging.next_batch_size(1000, 1000, 0.25, 0.5) == 2000
    # A slow batch shrinks the next one: 1000 rows in 2 s, 0.5 s is 250 rows.
    assert purging.next_batch_size(1000, 1000, 2.0, 0.5) == 250


def test_next_batch_size_grows_at_most_twice_a_step():
    assert purging.next_batch_size(1000, 1000, 0.001, 0.5) == 1000 * purging.GROWTH


def test_next_batch_size_stays_within_its_bounds():
    assert purging.next_batch_size(1000, 10, 10.0, 0.5) == purging.MIN_BATCH
    assert purging.next_batch_size(purging.MAX_BATCH, 10**9, 0.5, 0.5) == purging.MAX_BATCH


@pytest.mark.parametrize(("rows", "elapsed"), [(0, 0.3), (500, 0.0)])
def test_next_batch_size_without_a_rate_grows_to_the_cap(rows, elapsed):
    assert purging.next_batch_size(1000, rows, elapsed, 0.5) == 2000
    assert purging.next_batch_size(150_000, rows, elapsed, 0.5) == purging.MAX_BATCH


# delete_purgeable


def test_on_batch_hears_each_committed_batch():
    old = utcnow() - 3 * DAY
    make_tokens([old] * 7, blacklisted=True)
    make_tokens([old] * 18 + [utcnow() + 3 * DAY])
    heard: list[tuple[int, int]] = []

    def on_batch(rows: int) -> None:
        # Called once the batch is committed: the rows left are what the database holds.
        heard.append((rows, OutstandingToken.objects.count()))

    stats = purging.delete_purgeable(
        "default", safe_cutoff(timedelta(0)), batch_size=10, on_batch=on_batch
    )
    assert heard == [(10, 16), (10, 6), (5, 1)]
    assert stats.batches == 3
    assert stats.deleted == purging.Deleted(outstanding=25, blacklisted=7)
    assert stats.longest_transaction > 0
    assert OutstandingToken.objects.count() == 1
    assert BlacklistedToken.objects.count() == 0


def test_nothing_purgeable_is_no_batch():
    make_tokens([utcnow() + DAY] * 3, blacklisted=True)
    heard: list[int] = []
    stats = purging.delete_purgeable("default", safe_cutoff(timedelta(0)), on_batch=heard.append)
    assert stats == purging.BatchStats()
    assert heard == []
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (3, 3)


def test_batches_go_in_primary_key_order_and_each_leaves_both_tables_consistent():
    now = utcnow()
    # Live rows among the expired ones: a batch is a range of purgeable keys only.
    expiries = [now - DAY if i % 4 else now + DAY for i in range(40)]
    tokens = make_tokens(expiries, blacklisted=[i % 3 == 0 for i in range(40)])
    expired = sorted(t.pk for t, e in zip(tokens, expiries, strict=True) if e < now)
    live = {t.pk for t, e in zip(tokens, expiries, strict=True) if e > now}
    seen: list[set[int]] = []

    def on_batch(rows: int) -> None:
        seen.append(set(OutstandingToken.objects.values_list("pk", flat=True)))
        assert orphan_blacklist_rows() == 0
        if len(seen) == 2:
            raise KeyboardInterrupt  # stopped between batches, like Ctrl+C

    with pytest.raises(KeyboardInterrupt):
        purging.delete_purgeable(
            "default", safe_cutoff(timedelta(0)), batch_size=8, on_batch=on_batch
        )
    # Each batch took the lowest purgeable keys left, and never a live row.
    assert seen == [set(expired[8:]) | live, set(expired[16:]) | live]
    assert orphan_blacklist_rows() == 0
    # The next run starts where this one stopped.
    stats = purging.delete_purgeable("default", safe_cutoff(timedelta(0)), batch_size=8)
    assert stats.deleted.outstanding == len(expired) - 16
    assert set(OutstandingToken.objects.values_list("pk", flat=True)) == live
    assert orphan_blacklist_rows() == 0


# The purge tunes its own SQLite connection while it runs and puts everything back. These
# run on the always-SQLite ``secondary`` database, whatever TOKENOPS_TEST_DB says.


def pragma(name: str) -> object:
    with connections["secondary"].cursor() as cursor:
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]


def set_pragma(statement: str) -> None:
    with connections["secondary"].cursor() as cursor:
        cursor.execute(f"PRAGMA {statement}")


class Spy:
    """An on_batch callback that records the connection's pragmas while batches run."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, object]] = []

    def __call__(self, rows: int) -> None:
        self.seen.append((pragma("cache_size"), pragma("journal_mode")))


def purge_secondary(spy: Spy) -> purging.BatchStats:
    old = utcnow() - timedelta(days=3)
    make_tokens([old] * 5, blacklisted=True, using="secondary")
    make_tokens([old] * 5 + [utcnow() + timedelta(days=3)], using="secondary")
    return purging.delete_purgeable(
        "secondary", safe_cutoff(timedelta(0)), batch_size=4, on_batch=spy
    )


def test_bigger_cache_and_persistent_journal_only_while_purging():
    before = (pragma("cache_size"), pragma("journal_mode"))
    assert before == (-2000, "delete")
    spy = Spy()
    stats = purge_secondary(spy)
    assert stats.deleted == purging.Deleted(outstanding=10, blacklisted=5)
    assert stats.batches == 3
    assert spy.seen == [(-purging.SQLITE_CACHE_KIB, "persist")] * 3
    assert (pragma("cache_size"), pragma("journal_mode")) == before
    assert OutstandingToken.objects.using("secondary").count() == 1
    assert BlacklistedToken.objects.using("secondary").count() == 0


def test_wal_database_keeps_its_journal_mode_and_a_larger_cache_is_kept():
    assert pragma("journal_mode = WAL") == "wal"
    set_pragma("cache_size = -65536")
    try:
        spy = Spy()
        stats = purge_secondary(spy)
        assert stats.deleted.outstanding == 10
        assert spy.seen == [(-65536, "wal")] * 3
        assert (pragma("cache_size"), pragma("journal_mode")) == (-65536, "wal")
    finally:
        set_pragma("journal_mode = DELETE")
        set_pragma("cache_size = -2000")


# PostgreSQL with psycopg 3 ``server_side_binding``: more than 65,535 expired tokens.
# flushexpiredtokens fails there (Django deletes the blacklist rows in one statement that
# lists every expired id; the protocol allows 65,535 parameters) and deletes nothing; the
# engine deletes by primary-key range and succeeds.

EXPIRED = 66_000
LIVE = 500


@pytest.mark.slow
@pytest.mark.skipif(connection.vendor != "postgresql", reason="a psycopg 3 option")
def test_token_purge_succeeds_where_flushexpiredtokens_fails():
    now = utcnow()
    make_tokens(
        [now - timedelta(days=1 + i % 30) for i in range(EXPIRED)],
        blacklisted=[i % 3 == 0 for i in range(EXPIRED)],
        user=None,
    )
    make_tokens(
        [now + timedelta(days=1)] * LIVE, blacklisted=[True] * 100 + [False] * 400, user=None
    )
    env = project_env(database_url(), settings_module="tests.settings_server_binding")

    done = run_manage("flushexpiredtokens", env=env)
    assert done.returncode != 0
    assert "number of parameters must be between 0 and 65535" in done.stderr
    assert OutstandingToken.objects.count() == EXPIRED + LIVE  # nothing deleted

    done = run_manage("token_purge", "--format", "json", env=env)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    data = json.loads(done.stdout)
    assert data["deleted"] == {"outstanding": EXPIRED, "blacklisted": EXPIRED // 3}
    assert data["after"] == {"outstanding": LIVE, "blacklisted": 100}
    assert OutstandingToken.objects.count() == LIVE
    assert BlacklistedToken.objects.count() == 100


# Orphan blacklist rows (their outstanding row gone, foreign-key checks off): they
# blacklist nothing, have no expiry, and every purge deletes them.


@pytest.mark.parametrize("using", ["default", "secondary"])
def test_orphan_blacklist_rows_are_deleted_and_nothing_else(using):
    now = utcnow()
    live = make_tokens([now + DAY] * 3, blacklisted=True, using=using)
    make_orphans(make_tokens([now + DAY] * 25, blacklisted=True, using=using), using)
    heard: list[purging.Deleted] = []

    stats = purging.delete_purgeable(
        using, safe_cutoff(timedelta(0)), batch_size=10, on_deleted=heard.append
    )

    assert stats.deleted == purging.Deleted(orphans=25)
    assert heard == [purging.Deleted(orphans=10)] * 2 + [purging.Deleted(orphans=5)]
    assert orphan_blacklist_rows(using) == 0
    live_pks = sorted(t.pk for t in live)
    assert sorted(BlacklistedToken.objects.using(using).values_list("token_id", flat=True)) == (
        live_pks
    )
    assert sorted(OutstandingToken.objects.using(using).values_list("pk", flat=True)) == live_pks


def test_orphans_go_after_the_purgeable_rows_and_not_when_stopped():
    now = utcnow()
    make_tokens([now - DAY] * 4, blacklisted=True)
    make_orphans(make_tokens([now - DAY] * 2, blacklisted=True))

    stopped = purging.delete_purgeable(
        "default", safe_cutoff(timedelta(0)), batch_size=2, should_stop=lambda: True
    )
    assert stopped.deleted == purging.Deleted(outstanding=2, blacklisted=2)
    assert orphan_blacklist_rows() == 2

    rest = purging.delete_purgeable("default", safe_cutoff(timedelta(0)))
    assert rest.deleted == purging.Deleted(outstanding=2, blacklisted=2, orphans=2)
    assert BlacklistedToken.objects.count() == 0


@pytest.mark.parametrize("index", range(len(out_of_space_errors())))
def test_out_of_space_on_postgres_and_mariadb_is_recognised(index):
    assert purging.is_out_of_space(driver_error(out_of_space_errors()[index]))


def test_other_errors_are_not_out_of_space():
    for error in other_driver_errors():
        assert not purging.is_out_of_space(driver_error(error))
    assert not purging.is_out_of_space(ValueError("database or disk is full"))


def test_sqlite_full_is_recognised(tmp_path):
    error = sqlite_full_error(tmp_path)
    assert str(error) == "database or disk is full"
    assert purging.is_out_of_space(driver_error(error))


def test_out_of_space_suggests_the_largest_batch_that_fit():
    error = driver_error(sqlite3.OperationalError("database or disk is full"))
    assert str(purging.out_of_space("default", error, fitted=200, failed=1)) == (
        "Database 'default' is out of space (database or disk is full): free disk space, or "
        "run token_purge again with --batch-size 200."
    )
    assert str(purging.out_of_space("default", error, fitted=0, failed=1)) == (
        "Database 'default' is out of space (database or disk is full), even for a batch of "
        "one row: free disk space, then run token_purge again."
    )
