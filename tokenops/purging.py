"""The deletion engine: purgeable token rows go in short, time-sized batches.

It knows nothing of the purge history or of who started it: ``operations.run_purge``
drives it and is told of each batch through a callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from django.db import DatabaseError, connections, transaction
from django.db.models import Max
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

if TYPE_CHECKING:
    from .cutoff import Cutoff

# Target length of one batch's transaction. Each commit rewrites the index pages the batch
# touched, so longer batches are faster overall (SQLite, 1,000,000 tokens: 0.25 s -> about
# 130 batches, 0.5 s -> about 60, 0.5 s longest about 0.7-0.9 s under load); 0.5 s keeps
# the longest transaction under 1 s, far from Django's 5 s SQLite busy timeout.
DEFAULT_BATCH_SECONDS = 0.5
# InnoDB (server defaults: 128 MB buffer pool) stalls on checkpoint flushes every few
# hundred thousand deleted rows, so a 0.5 s batch can take 2-3 s; a shorter target keeps
# the longest transaction near 1 s and was also faster overall (1,000,000 tokens: 21 s
# instead of 31-39 s).
BATCH_SECONDS_BY_VENDOR = {"mysql": 0.25}
FIRST_BATCH = 1000
MIN_BATCH = 100
GROWTH = 2
MAX_BATCH = 200_000
# SQLite has a single write lock, and a writer that has waited a while polls for it
# only every 100 ms (sqlite3_busy_timeout). A purge that starts its next batch as soon
# as it commits can keep the app's writes waiting for seconds, up to "database is
# locked"; leaving the lock free this long after each batch lets every waiting writer in.
SQLITE_PAUSE = 0.1
# SQLite page cache of the purge connection, in KiB (SQLite's default: 2 MiB).
SQLITE_CACHE_KIB = 16 * 1024


class Progress(Protocol):
    """What a purge shows while it runs (the command draws it as a progress bar)."""

    def start(self, total: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Deleted:
    outstanding: int = 0
    blacklisted: int = 0


@dataclass(frozen=True)
class BatchStats:
    deleted: Deleted = field(default_factory=Deleted)
    batches: int = 0
    longest_transaction: float = 0.0


def next_batch_size(current: int, rows: int, elapsed: float, target: float) -> int:
    """Aim the next transaction at ``target`` seconds from the rate just measured.

    Growth is capped at 2x a step so one fast batch (a warm cache, or a gap between
    the server's background flushes on MariaDB) cannot jump to a batch that holds the
    write lock for long; measured at 1,000,000 tokens, 4x let single batches reach 2 s.
    """
    if rows == 0 or elapsed <= 0:
        return min(current * GROWTH, MAX_BATCH)
    wanted = int(rows / elapsed * target)
    return max(MIN_BATCH, min(wanted, current * GROWTH, MAX_BATCH))


@contextmanager
def sqlite_purge_pragmas(using: str) -> Iterator[None]:
    """Tune the purge's own SQLite connection while it runs, then put everything back.

    Every deleted row also deletes an entry of simplejwt's unique ``jti`` index, whose
    keys are random, so a batch dirties pages all over that index. With SQLite's default
    2 MiB cache they do not fit: SQLite spills them to the file mid-transaction, syncing
    the journal each time, and reads them back for the next rows (measured at 1,000,000
    tokens: 40% more CPU). A 16 MiB cache holds most of them. ``journal_mode=PERSIST``
    keeps the rollback journal file between batches instead of creating and deleting it
    at every commit (about 20% faster batches), and is just as durable.

    Both settings belong to this connection only; nothing is stored in the database file,
    and a database in WAL (or any mode but the default DELETE) keeps its journal mode.
    Outside SQLite this does nothing.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        yield
        return
    restore: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        cache = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        cache_kib = -cache if cache < 0 else cache * cursor.fetchone()[0] // 1024
        if cache_kib < SQLITE_CACHE_KIB:
            cursor.execute(f"PRAGMA cache_size = -{int(SQLITE_CACHE_KIB)}")
            restore.append(f"PRAGMA cache_size = {int(cache)}")
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0].lower() == "delete":
            cursor.execute("PRAGMA journal_mode = PERSIST")
            if cursor.fetchone()[0].lower() == "persist":
                restore.append("PRAGMA journal_mode = DELETE")
    try:
        yield
    finally:
        # Both settings die with the connection anyway: never let restoring them hide
        # the error that ended the purge.
        if restore and connection.connection is not None:
            with suppress(DatabaseError), connection.cursor() as cursor:
                for statement in restore:
                    cursor.execute(statement)


def delete_purgeable(
    using: str,
    cutoff: Cutoff,
    *,
    batch_size: int | None = None,
    batch_seconds: float | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> BatchStats:
    """Delete rows with ``expires_at <= cutoff`` in primary-key order, one transaction a batch.

    Each batch removes the blacklist rows first and then their outstanding rows, in one
    transaction, so an interruption at any moment leaves both tables consistent and the
    next run starts where this one stopped. A batch is a primary-key range, not an IN
    list, so no backend's parameter limit applies and MySQL needs no LIMIT in a subquery.
    ``on_batch`` hears the outstanding rows of each committed batch.
    """
    if batch_seconds is None:
        vendor = connections[using].vendor
        batch_seconds = BATCH_SECONDS_BY_VENDOR.get(vendor, DEFAULT_BATCH_SECONDS)
    purgeable = OutstandingToken.objects.using(using).filter(expires_at__lte=cutoff.db_value())
    size = batch_size or FIRST_BATCH
    last_pk = 0
    outstanding = blacklisted = batches = 0
    longest = 0.0
    pause = SQLITE_PAUSE if connections[using].vendor == "sqlite" else 0.0
    with sqlite_purge_pragmas(using):
        while True:
            window = purgeable.filter(pk__gt=last_pk).order_by("pk")[:size]
            upper = window.aggregate(upper=Max("pk"))["upper"]
            if upper is None:
                break
            batch = purgeable.filter(pk__gt=last_pk, pk__lte=upper)
            # The token_id range repeats what the subquery says; it lets MariaDB (which
            # runs IN-subqueries of a single-table DELETE once per row) walk only this
            # batch's slice of the unique token_id index instead of the whole table.
            blacklist = BlacklistedToken.objects.using(using).filter(
                token_id__gt=last_pk, token_id__lte=upper, token__in=batch.values("pk")
            )
            started = time.monotonic()
            with transaction.atomic(using=using):
                # _raw_delete: one DELETE statement. QuerySet.delete() would load every
                # OutstandingToken for the CASCADE, which is what makes flushexpiredtokens heavy.
                removed_blacklisted = blacklist._raw_delete(using)
                removed = batch._raw_delete(using)
            elapsed = time.monotonic() - started
            longest = max(longest, elapsed)
            outstanding += removed
            blacklisted += removed_blacklisted
            batches += 1
            last_pk = upper
            if on_batch is not None:
                on_batch(removed)
            if batch_size is None:
                size = next_batch_size(size, removed, elapsed, batch_seconds)
            if pause:
                time.sleep(pause)
    return BatchStats(
        deleted=Deleted(outstanding=outstanding, blacklisted=blacklisted),
        batches=batches,
        longest_transaction=longest,
    )
