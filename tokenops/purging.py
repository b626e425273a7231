"""Delete purgeable token rows in short, time-sized batches, and report what happened.

Like ``clearsessions`` calling ``SessionStore.clear_expired()``, the commands and the
Celery task only parse options and call ``run_purge``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Protocol

from django.db import connections, transaction
from django.db.models import Max
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from .checks import ensure_ready
from .counting import TokenCounts, count_tokens
from .cutoff import Cutoff, safe_cutoff

if TYPE_CHECKING:
    from collections.abc import Callable

    from .history import PurgeRecorder

logger = logging.getLogger("tokenops")

FIRST_BATCH = 1000
MIN_BATCH = 100
MAX_BATCH = 200_000
# SQLite has a single write lock, and a writer that has waited a while polls for it
# only every 100 ms (sqlite3_busy_timeout). A purge that starts its next batch as soon
# as it commits can keep the app's writes waiting for seconds, up to "database is
# locked"; leaving the lock free this long after each batch lets every waiting writer in.
SQLITE_PAUSE = 0.1


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

    Growth is capped at 4x a step so one fast batch on a cold cache cannot jump to a
    batch that holds the write lock for long.
    """
    if rows == 0 or elapsed <= 0:
        return min(current * 4, MAX_BATCH)
    wanted = int(rows / elapsed * target)
    return max(MIN_BATCH, min(wanted, current * 4, MAX_BATCH))


def delete_purgeable(
    using: str,
    cutoff: Cutoff,
    *,
    batch_size: int | None = None,
    batch_seconds: float = 0.25,
    progress: Progress | None = None,
) -> BatchStats:
    """Delete rows with ``expires_at <= cutoff`` in primary-key order, one transaction a batch.

    Each batch removes the blacklist rows first and then their outstanding rows, in one
    transaction, so an interruption at any moment leaves both tables consistent and the
    next run starts where this one stopped. A batch is a primary-key range, not an IN
    list, so no backend's parameter limit applies and MySQL needs no LIMIT in a subquery.
    """
    purgeable = OutstandingToken.objects.using(using).filter(expires_at__lte=cutoff.db_value())
    size = batch_size or FIRST_BATCH
    last_pk = 0
    outstanding = blacklisted = batches = 0
    longest = 0.0
    pause = SQLITE_PAUSE if connections[using].vendor == "sqlite" else 0.0
    while True:
        window = purgeable.filter(pk__gt=last_pk).order_by("pk")[:size]
        upper = window.aggregate(upper=Max("pk"))["upper"]
        if upper is None:
            break
        batch = purgeable.filter(pk__gt=last_pk, pk__lte=upper)
        blacklist = BlacklistedToken.objects.using(using).filter(token__in=batch.values("pk"))
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
    batch_seconds: float = 0.25,
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
    batch_seconds: float,
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
