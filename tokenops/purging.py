"""Delete purgeable token rows in short, time-sized batches, and report what happened.

Like ``clearsessions`` calling ``SessionStore.clear_expired()``, the commands and the
Celery task only parse options and call ``run_purge``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Protocol

from django.db import DatabaseError, connections, transaction
from django.db.models import Max
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from .app_settings import get_settings
from .checks import ensure_database, ensure_ready
from .counting import TokenCounts, count_tokens
from .cutoff import Cutoff, safe_cutoff

if TYPE_CHECKING:
    from collections.abc import Callable

    from .history import PurgeRecorder

logger = logging.getLogger("tokenops")

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
    """What a purge reports while it runs (the command draws it as a progress bar)."""

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


@dataclass(frozen=True)
class PurgeResult:
    dry_run: bool
    database: str
    cutoff: Cutoff
    before: TokenCounts
    after: TokenCounts
    stats: BatchStats
    seconds: float
    started_at: datetime

    @property
    def deleted(self) -> Deleted:
        return self.stats.deleted


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
    progress: Progress | None = None,
) -> BatchStats:
    """Delete rows with ``expires_at <= cutoff`` in primary-key order, one transaction a batch.

    Each batch removes the blacklist rows first and then their outstanding rows, in one
    transaction, so an interruption at any moment leaves both tables consistent and the
    next run starts where this one stopped. A batch is a primary-key range, not an IN
    list, so no backend's parameter limit applies and MySQL needs no LIMIT in a subquery.
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
            if progress is not None:
                progress.advance(removed)
            if batch_size is None:
                size = next_batch_size(size, removed, elapsed, batch_seconds)
            if pause:
                time.sleep(pause)
    return BatchStats(
        deleted=Deleted(outstanding=outstanding, blacklisted=blacklisted),
        batches=batches,
        longest_transaction=longest,
    )


def run_purge(
    using: str,
    older_than: timedelta,
    *,
    dry_run: bool,
    batch_size: int | None = None,
    batch_seconds: float | None = None,
    progress: Progress | None = None,
    trigger: str = "command",
    started_by: str = "",
    warn: Callable[[str], None] | None = None,
) -> PurgeResult:
    """Count, delete what is purgeable (unless ``dry_run``), count again; record it.

    ``trigger`` ("command", "task", "admin") and ``started_by`` go into the purge
    history; ``warn`` receives the one-line warning when the history row could not be
    written (default: the "tokenops" logger).
    """
    # A bad TOKENOPS value or a mistyped SQLite path fails before any history row is written.
    get_settings()
    ensure_database(using)
    from .history import PurgeRecorder  # models: only once the app registry is ready

    recorder = PurgeRecorder(
        using,
        trigger=trigger,
        started_by=started_by,
        dry_run=dry_run,
        older_than=older_than,
        batch_size=batch_size,
        warn=warn,
    )
    with recorder:
        result = _purge(
            using,
            older_than,
            dry_run=dry_run,
            batch_size=batch_size,
            batch_seconds=batch_seconds,
            progress=progress,
            recorder=recorder,
        )
        recorder.finished(result)
    return result


def _purge(
    using: str,
    older_than: timedelta,
    *,
    dry_run: bool,
    batch_size: int | None,
    batch_seconds: float | None,
    progress: Progress | None,
    recorder: PurgeRecorder,
) -> PurgeResult:
    started_at = datetime.now(timezone.utc)
    clock = time.monotonic()
    ensure_ready(using)
    cutoff = safe_cutoff(older_than, now=started_at)
    before = count_tokens(using, cutoff)
    recorder.counted(cutoff, before)
    if dry_run:
        stats, after = BatchStats(), before
    else:
        if progress is not None:
            progress.start(before.outstanding.purgeable)
        try:
            stats = delete_purgeable(
                using,
                cutoff,
                batch_size=batch_size,
                batch_seconds=batch_seconds,
                progress=recorder.watch(progress),
            )
        finally:
            if progress is not None:
                progress.close()
        after = count_tokens(using, cutoff)
    result = PurgeResult(
        dry_run=dry_run,
        database=using,
        cutoff=cutoff,
        before=before,
        after=after,
        stats=stats,
        seconds=time.monotonic() - clock,
        started_at=started_at,
    )
    logger.info(
        "token purge%s on %r: cutoff %s (%s), %s outstanding and %s blacklisted rows %s in %.2f s",
        " (dry run)" if dry_run else "",
        using,
        cutoff.moment.isoformat(),
        cutoff.reason,
        before.outstanding.purgeable if dry_run else stats.deleted.outstanding,
        before.blacklisted.purgeable if dry_run else stats.deleted.blacklisted,
        "would be deleted" if dry_run else "deleted",
        result.seconds,
    )
    return result
