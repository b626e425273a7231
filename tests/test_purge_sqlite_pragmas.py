"""The purge tunes its own SQLite connection while it runs and puts everything back.

These run on the always-SQLite ``secondary`` database, so they run whatever
TOKENOPS_TEST_DB says.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connections
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.conftest import utcnow
from tokenops import purging
from tokenops.cutoff import safe_cutoff

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "secondary"])


def pragma(name: str) -> object:
    with connections["secondary"].cursor() as cursor:
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]


def set_pragma(statement: str) -> None:
    with connections["secondary"].cursor() as cursor:
        cursor.execute(f"PRAGMA {statement}")


class Spy:
    """A Progress that records the connection's pragmas while batches are running."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, object]] = []

    def start(self, total: int) -> None: ...

    def advance(self, rows: int) -> None:
        self.seen.append((pragma("cache_size"), pragma("journal_mode")))

    def close(self) -> None: ...


def purge_secondary(make_tokens, spy: Spy) -> purging.BatchStats:
    old = utcnow() - timedelta(days=3)
    make_tokens([old] * 5, blacklisted=True, using="secondary")
    make_tokens([old] * 5 + [utcnow() + timedelta(days=3)], using="secondary")
    return purging.delete_purgeable(
        "secondary", safe_cutoff(timedelta(0)), batch_size=4, progress=spy
    )


def test_bigger_cache_and_persistent_journal_only_while_purging(make_tokens):
    before = (pragma("cache_size"), pragma("journal_mode"))
    assert before == (-2000, "delete")
    spy = Spy()
    stats = purge_secondary(make_tokens, spy)
    assert stats.deleted == purging.Deleted(outstanding=10, blacklisted=5)
    assert stats.batches == 3
    assert spy.seen == [(-purging.SQLITE_CACHE_KIB, "persist")] * 3
    assert (pragma("cache_size"), pragma("journal_mode")) == before
    assert OutstandingToken.objects.using("secondary").count() == 1
    assert BlacklistedToken.objects.using("secondary").count() == 0


def test_wal_database_keeps_its_journal_mode_and_a_larger_cache_is_kept(make_tokens):
    assert pragma("journal_mode = WAL") == "wal"
    set_pragma("cache_size = -65536")
    try:
        spy = Spy()
        stats = purge_secondary(make_tokens, spy)
        assert stats.deleted.outstanding == 10
        assert spy.seen == [(-65536, "wal")] * 3
        assert (pragma("cache_size"), pragma("journal_mode")) == (-65536, "wal")
    finally:
        set_pragma("journal_mode = DELETE")
        set_pragma("cache_size = -2000")
