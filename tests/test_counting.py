"""count_tokens and top_users: aggregate counts taken by the real database."""

import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from my_bathhouse_backend.settings import SIMPLE_JWT
from tests.utils import (
    delete_user_keeping_tokens,
    make_orphans,
    make_tokens,
    stored,
    utcnow,
    wait_until,
)
from tokenops import counting
from tokenops.counting import BUCKETS, TableCounts, TokenCounts, UserTokens, count_tokens, top_users
from tokenops.cutoff import safe_cutoff

pytestmark = pytest.mark.django_db(databases=["default", "secondary"])
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def no_leeway(settings):
    settings.SIMPLE_JWT = {**SIMPLE_JWT, "LEEWAY": 0}


@pytest.fixture
def now():
    # Whole seconds: every backend stores them exactly, so boundaries are exact.
    return utcnow().replace(microsecond=0)


def cutoff_at(now, older_than=timedelta(0)):
    return safe_cutoff(older_than, sliding_tokens=False, now=now)


def zeros():
    return (0,) * len(BUCKETS)


def test_one_bucket_table_for_age_and_time_left():
    assert [(label, low, high) for label, low, high in BUCKETS] == [
        ("< 1 day", timedelta(0), DAY),
        ("1-7 days", DAY, 7 * DAY),
        ("7-30 days", 7 * DAY, 30 * DAY),
        ("> 30 days", 30 * DAY, None),
    ]


@pytest.fixture
def spread(now):
    """Outstanding rows on both sides of now; every second one blacklisted, some not."""
    hour = timedelta(hours=1)
    make_tokens([now + hour, now + 10 * DAY], blacklisted=True)
    make_tokens([now + 2 * DAY, now + 40 * DAY])
    make_tokens([now - hour, now - 10 * DAY], blacklisted=True)
    make_tokens([now - 3 * DAY, now - 40 * DAY, now - 50 * DAY])


def test_counts_of_both_tables(now, spread):
    counts = count_tokens("default", cutoff_at(now, older_than=2 * DAY))
    assert counts == TokenCounts(
        outstanding=TableCounts(
            total=9, active=4, expired=5, purgeable=4, expired_by_age=(1, 1, 1, 2)
        ),
        blacklisted=TableCounts(
            total=4, active=2, expired=2, purgeable=1, expired_by_age=(1, 0, 1, 0)
        ),
    )


def test_time_left_is_counted_only_when_asked(now, spread):
    cutoff = cutoff_at(now, older_than=2 * DAY)
    plain = count_tokens("default", cutoff)
    counts = count_tokens("default", cutoff, by_time_left=True)
    assert (plain.outstanding.active_by_left, plain.blacklisted.active_by_left) == ((), ())
    assert counts.outstanding.active_by_left == (1, 1, 1, 1)
    assert counts.blacklisted.active_by_left == (1, 0, 1, 0)
    # Everything else is the same count.
    assert counts.outstanding == replace(plain.outstanding, active_by_left=(1, 1, 1, 1))
    assert counts.blacklisted == replace(plain.blacklisted, active_by_left=(1, 0, 1, 0))


def test_bucket_boundaries_are_exact(now):
    # A row expiring exactly now is expired; exactly one day ago is "1-7 days" old;
    # exactly one day from now has "< 1 day" left.
    make_tokens([now, now - DAY, now - 7 * DAY, now - 30 * DAY])
    make_tokens([now + timedelta(seconds=1), now + DAY, now + 7 * DAY, now + 30 * DAY])
    make_tokens([now + 30 * DAY + timedelta(seconds=1)])
    out = count_tokens("default", cutoff_at(now), by_time_left=True).outstanding
    assert (out.total, out.expired, out.active, out.purgeable) == (9, 4, 5, 4)
    assert out.expired_by_age == (1, 1, 1, 1)
    assert out.active_by_left == (2, 1, 1, 1)
    assert sum(out.expired_by_age) == out.expired
    assert sum(out.active_by_left) == out.active


def test_purgeable_is_what_expired_before_the_cutoff(now):
    make_tokens([now - timedelta(hours=23), now - DAY, now - DAY - timedelta(seconds=1)])
    out = count_tokens("default", cutoff_at(now, older_than=DAY)).outstanding
    assert (out.expired, out.purgeable) == (3, 2)


def test_leeway_keeps_rows_purgeable_later(settings, now):
    settings.SIMPLE_JWT = {**SIMPLE_JWT, "LEEWAY": 60}
    make_tokens([now - timedelta(seconds=30), now - timedelta(seconds=90)], blacklisted=True)
    counts = count_tokens("default", cutoff_at(now))
    assert (counts.outstanding.expired, counts.outstanding.purgeable) == (2, 1)
    assert (counts.blacklisted.expired, counts.blacklisted.purgeable) == (2, 1)


def test_naive_utc_rows_in_a_non_utc_time_zone(settings, now):
    # Moscow is UTC+3: local time against naive UTC rows would shift every bucket.
    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Moscow"
    make_tokens([now + timedelta(hours=2), now + 2 * DAY, now - timedelta(hours=2)])
    out = count_tokens("default", cutoff_at(now), by_time_left=True).outstanding
    assert (out.total, out.active, out.expired, out.purgeable) == (3, 2, 1, 1)
    assert out.expired_by_age == (1, 0, 0, 0)
    assert out.active_by_left == (1, 1, 0, 0)


def test_an_empty_database_counts_zero(now):
    counts = count_tokens("default", cutoff_at(now), by_time_left=True)
    empty = TableCounts(0, 0, 0, 0, zeros(), zeros())
    assert counts == TokenCounts(outstanding=empty, blacklisted=empty)


def test_nothing_purgeable_asks_both_tables():
    none = TableCounts(1, 1, 0, 0, zeros())
    some = TableCounts(1, 0, 1, 1, (1, 0, 0, 0))
    assert TokenCounts(outstanding=none, blacklisted=none).nothing_purgeable
    assert not TokenCounts(outstanding=some, blacklisted=none).nothing_purgeable
    assert not TokenCounts(outstanding=none, blacklisted=some).nothing_purgeable
    assert TokenCounts(outstanding=none, blacklisted=none, orphans=3).nothing_purgeable


def test_counts_read_the_database_asked_for(now):
    make_tokens([now - 2 * DAY, now + 2 * DAY], blacklisted=[True, False], using="secondary")
    other = count_tokens("secondary", cutoff_at(now), by_time_left=True)
    assert other.outstanding == TableCounts(2, 1, 1, 1, (0, 1, 0, 0), (0, 1, 0, 0))
    assert other.blacklisted == TableCounts(1, 0, 1, 1, (0, 1, 0, 0), zeros())
    assert count_tokens("default", cutoff_at(now)).outstanding.total == 0


def test_one_query_per_table_whatever_the_rows(now, spread, django_assert_num_queries):
    # MySQL/MariaDB: one scan counts both tables; then one COUNT of the blacklist finds
    # its orphans.
    queries = (1 if connection.vendor in counting.ONE_SCAN_VENDORS else 2) + 1
    with django_assert_num_queries(queries):
        count_tokens("default", cutoff_at(now), by_time_left=True)


def users(*names, using="default"):
    model = get_user_model()
    return [model._default_manager.db_manager(using).create(username=name) for name in names]


def test_top_users_by_tokens_then_by_id(now):
    alice, bob, carol, dave = users("alice", "bob", "carol", "dave")
    make_tokens([now] * 3, user=alice)
    make_tokens([now] * 2, user=carol)
    make_tokens([now] * 2, user=bob)
    make_tokens([now], user=dave)
    assert top_users("default", 3) == [
        UserTokens(alice.pk, "alice", 3),
        UserTokens(bob.pk, "bob", 2),
        UserTokens(carol.pk, "carol", 2),
    ]
    assert len(top_users("default", 10)) == 4


def test_tokens_of_deleted_users_count_together(now):
    alice, gone = users("alice", "gone")
    make_tokens([now] * 2, user=gone)
    make_tokens([now], user=None)
    make_tokens([now] * 2, user=alice, blacklisted=True)
    gone.delete()
    assert top_users("default", 5) == [
        UserTokens(None, None, 3),
        UserTokens(alice.pk, "alice", 2),
    ]


def test_top_users_counts_blacklisted_and_expired_tokens_too(now):
    (alice,) = users("alice")
    make_tokens([now - 40 * DAY, now + DAY], user=alice, blacklisted=[True, False])
    assert top_users("default", 1) == [UserTokens(alice.pk, "alice", 2)]


@pytest.mark.parametrize("limit", [0, -1])
def test_no_list_asked_is_no_query(now, limit, django_assert_num_queries):
    make_tokens([now])
    with django_assert_num_queries(0):
        assert top_users("default", limit) == []


def test_names_come_in_one_query_whatever_the_users(now, django_assert_num_queries):
    for user in users(*(f"user{index}" for index in range(5))):
        make_tokens([now], user=user)
    with django_assert_num_queries(2):
        found = top_users("default", 10)
    assert sorted(user.username for user in found) == [f"user{index}" for index in range(5)]


def test_top_users_read_the_database_asked_for(now):
    (zoe,) = users("zoe", using="secondary")
    make_tokens([now] * 2, user=zoe, using="secondary")
    make_tokens([now])
    assert top_users("secondary", 10) == [UserTokens(zoe.pk, "zoe", 2)]


@pytest.mark.parametrize("one_scan", [False, True])
def test_both_query_shapes_count_exactly_the_same(now, spread, one_scan, monkeypatch):
    # MySQL/MariaDB counts blacklist rows from the outstanding scan (LEFT JOIN); the other
    # backends join the blacklist to its outstanding rows. Either shape, on this backend,
    # gives the same exact counts, boundaries included (a row expiring exactly at a moment
    # counts as expired at it).
    vendors = {connection.vendor} if one_scan else set()
    monkeypatch.setattr(counting, "ONE_SCAN_VENDORS", vendors)
    make_tokens([now, now - DAY, now + DAY, now - 7 * DAY, now + 30 * DAY], blacklisted=True)
    counts = count_tokens("default", cutoff_at(now, older_than=2 * DAY), by_time_left=True)
    assert counts == TokenCounts(
        outstanding=TableCounts(
            total=14,
            active=6,
            expired=8,
            purgeable=5,
            expired_by_age=(2, 2, 2, 2),
            active_by_left=(2, 1, 2, 1),
        ),
        blacklisted=TableCounts(
            total=9,
            active=4,
            expired=5,
            purgeable=2,
            expired_by_age=(2, 1, 2, 0),
            active_by_left=(2, 0, 2, 0),
        ),
    )


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
@pytest.mark.parametrize("using", ["default", "secondary"])
def test_orphan_blacklist_rows_are_counted_on_their_own(now, using):
    """A blacklist row whose outstanding row is gone: in no other figure, counted once."""
    make_tokens([now - timedelta(hours=1), now + DAY], blacklisted=True, using=using)
    gone = make_tokens([now - 2 * DAY, now + 2 * DAY, now - 3 * DAY], blacklisted=True, using=using)
    make_orphans(gone, using)

    counts = count_tokens(using, cutoff_at(now))

    assert counts.orphans == 3
    assert counts.outstanding == TableCounts(2, 1, 1, 1, (1, 0, 0, 0))
    assert counts.blacklisted == TableCounts(2, 1, 1, 1, (1, 0, 0, 0))


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
def test_a_user_id_that_points_to_no_user_is_a_deleted_user(now):
    carl, dora = users("carl", "dora")
    make_tokens([now] * 3, user=carl)
    make_tokens([now] * 2, user=dora)
    make_tokens([now], user=None)
    delete_user_keeping_tokens(carl)

    assert top_users("default", 3) == [
        UserTokens(carl.pk, None, 3),
        UserTokens(dora.pk, "dora", 2),
        UserTokens(None, None, 1),
    ]


class PairWriter(threading.Thread):
    """Inserts outstanding+blacklist pairs, one transaction each, on its own connection."""

    def __init__(self, now: datetime) -> None:
        super().__init__(daemon=True)
        self.now = now
        self.stop = threading.Event()
        self.pairs = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with transaction.atomic():
                    token = OutstandingToken.objects.create(
                        jti=uuid.uuid4().hex,
                        token="header.payload.signature",
                        expires_at=stored(self.now - DAY),
                    )
                    BlacklistedToken.objects.create(token=token)
                self.pairs += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            connections.close_all()


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
def test_counts_under_a_concurrent_writer_are_one_snapshot(now):
    """Each pair adds one row to each table: counted together, both grow alike.

    Read in separate statements, the blacklist count (read last) saw pairs the
    outstanding count had missed, and MySQL's orphan count saw "orphans".
    """
    make_tokens([now - DAY] * 2000, blacklisted=[True, False] * 1000, user=None)
    writer = PairWriter(now)
    writer.start()
    seen = []
    try:
        wait_until(lambda: writer.pairs > 0 or writer.error, timeout=30, what="a first pair")
        for _ in range(40):
            counts = count_tokens("default", cutoff_at(now))
            seen.append(
                (counts.outstanding.total - 2000, counts.blacklisted.total - 1000, counts.orphans)
            )
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None
    assert [(added, added, 0) for added, _black, _orphans in seen] == seen
    # The writer really wrote while the counts were read.
    assert len({added for added, _black, _orphans in seen}) > 5
