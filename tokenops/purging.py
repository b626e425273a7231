"""The deletion engine: purgeable token rows go in short, time-sized batches.

It knows nothing of the purge history or of who started it: ``operations.run_purge``
drives it and is told of each batch through a callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from django.db import DatabaseError, OperationalError, connections, transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.utils.translation import gettext as _
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from .errors import TokenopsError, first_line

if TYPE_CHECKING:
    from .cutoff import Cutoff

logger = logging.getLogger(__name__)

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
# SQLite, while no other connection commits (PRAGMA data_version unchanged across a
# batch and its pause): batches aim at this longer target instead, since each commit
# rewrites the index pages a batch touched and fewer, longer batches approach the cost of
# one transaction. The first commit of another connection brings the short target back
# at once (see docs/benchmark.md for the measurements behind the value).
DEFAULT_BATCH_SECONDS_IDLE = 1.5
# After another connection's commit, batches stay short until nobody else has committed
# for this long: app traffic comes in bursts, and a burst should not meet a long batch.
SQLITE_QUIET_SECONDS = 5.0


class Progress(Protocol):
    """What a purge shows while it runs (the command draws it as a progress bar)."""

    def start(self, total: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Deleted:
    outstanding: int = 0
    blacklisted: int = 0
    # Blacklist rows whose outstanding row was already gone (see delete_orphans).
    orphans: int = 0


@dataclass(frozen=True)
class Batch:
    """One committed batch, as the engine saw it."""

    rows: int
    seconds: float
    # The target the batch was sized for (the idle target only on a quiet SQLite file).
    target: float
    # Another connection had committed recently (SQLite: PRAGMA data_version moved within
    # SQLITE_QUIET_SECONDS), so the batch was sized for the short target.
    contended: bool
    # Seconds the lock was left free after the batch (SQLite's pause for waiting writers).
    pause: float


@dataclass(frozen=True)
class BatchStats:
    deleted: Deleted = field(default_factory=Deleted)
    batches: int = 0
    longest_transaction: float = 0.0
    # Every batch in order (a few hundred entries at 3,000,000 tokens).
    trace: tuple[Batch, ...] = ()
    # should_stop() asked the engine to stop before the purgeable rows ran out.
    stopped: bool = False

    @property
    def longest_contended(self) -> float:
        """The longest transaction among batches sized while another writer was active."""
        return max((b.seconds for b in self.trace if b.contended), default=0.0)


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


class SQLiteWriters:
    """Tells whether another connection committed to the SQLite file, and how long ago.

    ``PRAGMA data_version`` on the purge's own connection changes whenever any other
    connection (this process or another) has committed since the last time it was read;
    the purge's own commits never change it. Reading it costs no I/O.
    """

    def __init__(self, using: str, quiet: float | None = None) -> None:
        self.connection = connections[using]
        self.quiet = SQLITE_QUIET_SECONDS if quiet is None else quiet
        self.version = self._read()
        self.last_seen: float | None = None

    def _read(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            return cursor.fetchone()[0]

    def active(self) -> bool:
        """Did another connection commit since the last call, or within ``quiet`` seconds?"""
        version = self._read()
        now = time.monotonic()
        if version != self.version:
            self.version = version
            self.last_seen = now
        return self.last_seen is not None and now - self.last_seen <= self.quiet


# A batch rolled back by a deadlock or a serialization failure is tried again this many
# times, after DEADLOCK_PAUSE, 2x, 4x... seconds; then the error ends the purge.
DEADLOCK_RETRIES = 3
DEADLOCK_PAUSE = 0.05
# MySQL/MariaDB: ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT; PostgreSQL: deadlock_detected,
# serialization_failure (SQLSTATE).
MYSQL_RETRY_CODES = frozenset({1213, 1205})
POSTGRES_RETRY_STATES = frozenset({"40P01", "40001"})


def _driver_errors(exc: BaseException) -> list[BaseException]:
    """Django's database error and the driver's error it wraps (``__cause__``)."""
    return [error for error in (exc, exc.__cause__) if error is not None]


def _sqlstate(error: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE: ``sqlstate`` on psycopg 3, ``pgcode`` on psycopg2."""
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


def _mysql_code(error: BaseException) -> int | None:
    """The error number a MySQL/MariaDB driver error carries as its first argument."""
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_deadlock(exc: BaseException) -> bool:
    """A deadlock, lock wait timeout or serialization failure: the batch may simply be retried."""
    if not isinstance(exc, OperationalError):
        return False
    return any(
        _sqlstate(error) in POSTGRES_RETRY_STATES or _mysql_code(error) in MYSQL_RETRY_CODES
        for error in _driver_errors(exc)
    )


@dataclass(frozen=True)
class InDoubt:
    """A batch whose statements ran when an exception (often a signal) cut its COMMIT.

    Attached to that exception as ``IN_DOUBT``: the batch committed if and only if no
    purgeable row is left in its primary-key range (lower, upper].
    """

    lower: int
    upper: int
    deleted: Deleted


IN_DOUBT = "tokenops_in_doubt"

# Out of space for one batch: the disk or the table is full (a growing batch needs more
# rollback journal, undo log or WAL than is left), or a per-transaction resource ran out.
# The batch rolled back; half of it may fit. SQLite: SQLITE_FULL. PostgreSQL (SQLSTATE):
# disk_full, out_of_memory. MySQL/MariaDB: ER_RECORD_FILE_FULL "The table is full",
# ER_DISK_FULL, ER_LOCK_TABLE_FULL (InnoDB lock table), ER_TRANS_CACHE_FULL (binlog cache);
# EE_WRITE (3) and ER_GET_ERRNO (1030) only with errno 28 (ENOSPC).
SQLITE_FULL = 13
POSTGRES_FULL_STATES = frozenset({"53100", "53200"})
MYSQL_FULL_CODES = frozenset({1114, 1021, 1206, 1197})
MYSQL_ERRNO_CODES = frozenset({3, 1030})
ENOSPC_WORDS = ("No space left on device", "Errcode: 28", "error 28 ")


def is_out_of_space(exc: BaseException) -> bool:
    """The database ran out of space (or a transaction-sized resource) for this batch."""
    if not isinstance(exc, DatabaseError):
        return False
    for error in _driver_errors(exc):
        sqlite_code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
        if isinstance(sqlite_code, int) and sqlite_code & 0xFF == SQLITE_FULL:
            return True
        if str(error).strip() == "database or disk is full":  # SQLite, any Python
            return True
        if _sqlstate(error) in POSTGRES_FULL_STATES:
            return True
        mysql_code = _mysql_code(error)
        if mysql_code in MYSQL_FULL_CODES:
            return True
        message = str(error.args[1]) if mysql_code is not None and len(error.args) > 1 else ""
        if mysql_code in MYSQL_ERRNO_CODES and any(word in message for word in ENOSPC_WORDS):
            return True
    return False


class BatchTooLarge(Exception):
    """A batch ran out of space and rolled back (outside a caller's transaction): try less."""


def out_of_space(using: str, exc: BaseException, fitted: int, failed: int) -> TokenopsError:
    """The one line for a purge that no batch size gets through, with what to do.

    ``fitted``: the largest batch that committed in this run; ``failed``: the smallest
    that did not.
    """
    values = {"alias": repr(using), "error": first_line(exc.__cause__ or exc)}
    suggested = fitted or failed // 2
    if suggested:
        return TokenopsError(
            _(
                "Database %(alias)s is out of space (%(error)s): free disk space, or run "
                "token_purge again with --batch-size %(size)s."
            )
            % {**values, "size": suggested}
        )
    return TokenopsError(
        _(
            "Database %(alias)s is out of space (%(error)s), even for a batch of one row: "
            "free disk space, then run token_purge again."
        )
        % values
    )


def _delete_batch(
    using: str, blacklist: QuerySet, batch: QuerySet, lower: int, upper: int
) -> tuple[int, int]:
    """One batch in one transaction: (blacklist rows, outstanding rows) deleted.

    Retried on a deadlock only outside a caller's transaction: there the rollback undid
    exactly this batch, and nothing else is lost by trying it again.
    """
    connection = connections[using]
    retries = 0 if connection.in_atomic_block else DEADLOCK_RETRIES
    attempt = 0
    while True:
        pending: Deleted | None = None
        try:
            with transaction.atomic(using=using):
                # _raw_delete: one DELETE statement. QuerySet.delete() would load every
                # OutstandingToken for the CASCADE, which is what makes flushexpiredtokens heavy.
                removed_blacklisted = blacklist._raw_delete(using)
                removed = batch._raw_delete(using)
                pending = Deleted(outstanding=removed, blacklisted=removed_blacklisted)
        except BaseException as exc:
            if pending is not None:
                setattr(exc, IN_DOUBT, InDoubt(lower, upper, pending))
            if retries and pending is None and is_out_of_space(exc):
                raise BatchTooLarge from exc
            if not isinstance(exc, OperationalError) or attempt >= retries:
                raise
            if not is_deadlock(exc):
                raise
            attempt += 1
            logger.warning(
                "purge batch rolled back (%s); retry %d of %d", first_line(exc), attempt, retries
            )
            time.sleep(DEADLOCK_PAUSE * 2 ** (attempt - 1))
            continue
        return removed_blacklisted, removed


def delete_purgeable(
    using: str,
    cutoff: Cutoff,
    *,
    batch_size: int | None = None,
    batch_seconds: float | None = None,
    batch_seconds_idle: float | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_deleted: Callable[[Deleted], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchStats:
    """Delete rows with ``expires_at <= cutoff`` in primary-key order, one transaction a batch.

    Each batch removes the blacklist rows first and then their outstanding rows, in one
    transaction, so an interruption at any moment leaves both tables consistent and the
    next run starts where this one stopped. A batch is a primary-key range, not an IN
    list, so no backend's parameter limit applies and MySQL needs no LIMIT in a subquery.
    ``on_batch`` hears the outstanding rows of each committed batch, ``on_deleted`` the
    rowcounts of both its DELETE statements. ``should_stop`` is asked after each committed
    batch; True ends the purge there (``BatchStats.stopped``). A batch that meets a deadlock
    or a serialization failure is rolled back and tried again (DEADLOCK_RETRIES times).

    On SQLite, batches aim at ``batch_seconds_idle`` while no other connection commits,
    and at ``batch_seconds`` as soon as (and for SQLITE_QUIET_SECONDS after) one does; the
    pause after each batch stays, since a writer waiting for the lock has not committed
    yet and only that pause lets it in (and so makes it visible). Elsewhere
    ``batch_seconds_idle`` is not used: one target, measured as good for both cases.
    """
    vendor = connections[using].vendor
    if batch_seconds is None:
        batch_seconds = BATCH_SECONDS_BY_VENDOR.get(vendor, DEFAULT_BATCH_SECONDS)
    batch_seconds_idle = max(batch_seconds_idle or DEFAULT_BATCH_SECONDS_IDLE, batch_seconds)
    purgeable = OutstandingToken.objects.using(using).filter(expires_at__lte=cutoff.db_value())
    size = batch_size or FIRST_BATCH
    # Out of space: batches stay below the smallest size that did not fit.
    ceiling = MAX_BATCH
    fitted = 0
    last_pk = 0
    outstanding = blacklisted = batches = 0
    longest = 0.0
    trace: list[Batch] = []
    stopped = False
    pause = SQLITE_PAUSE if vendor == "sqlite" else 0.0
    with sqlite_purge_pragmas(using):
        writers = SQLiteWriters(using) if vendor == "sqlite" else None
        contended = True if writers is None else writers.active()
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
            try:
                removed_blacklisted, removed = _delete_batch(
                    using, blacklist, batch, last_pk, upper
                )
            except BatchTooLarge as exc:
                rows = min(size, batch.count())
                if rows <= 1:
                    raise out_of_space(using, exc, fitted, rows) from exc.__cause__
                # Info, not a warning: the run goes on, and its one line is the result.
                logger.info(
                    "purge batch of %d rows rolled back (%s); trying %d",
                    rows,
                    first_line(exc.__cause__ or exc),
                    rows // 2,
                )
                size = ceiling = rows // 2
                continue
            except DatabaseError as exc:
                # In a caller's transaction (no retry there), or cut in its COMMIT.
                if not is_out_of_space(exc):
                    raise
                error = out_of_space(using, exc, fitted, size)
                if hasattr(exc, IN_DOUBT):
                    setattr(error, IN_DOUBT, getattr(exc, IN_DOUBT))
                raise error from exc
            fitted = max(fitted, removed)
            elapsed = time.monotonic() - started
            longest = max(longest, elapsed)
            outstanding += removed
            blacklisted += removed_blacklisted
            batches += 1
            last_pk = upper
            if on_deleted is not None:
                on_deleted(Deleted(outstanding=removed, blacklisted=removed_blacklisted))
            if on_batch is not None:
                on_batch(removed)
            target = batch_seconds if contended else batch_seconds_idle
            trace.append(Batch(removed, elapsed, target, contended, pause))
            logger.debug(
                "batch %d: %d rows in %.3f s (target %.2f s%s)",
                batches,
                removed,
                elapsed,
                target,
                ", another writer active" if contended else "",
            )
            if pause:
                time.sleep(pause)
            if writers is not None:
                contended = writers.active()
            if batch_size is None:
                size = next_batch_size(
                    size, removed, elapsed, batch_seconds if contended else batch_seconds_idle
                )
            size = min(size, ceiling)
            if should_stop is not None and should_stop():
                stopped = True
                break
    orphans = 0 if stopped else delete_orphans(using, batch_size, on_deleted, should_stop)
    return BatchStats(
        deleted=Deleted(outstanding=outstanding, blacklisted=blacklisted, orphans=orphans),
        batches=batches,
        longest_transaction=longest,
        trace=tuple(trace),
        stopped=stopped,
    )


# Orphan blacklist rows deleted per transaction at most: narrow rows under one index.
ORPHAN_BATCH = 10_000


def delete_orphans(
    using: str,
    batch_size: int | None = None,
    on_deleted: Callable[[Deleted], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Delete blacklist rows whose outstanding row is gone; return how many went.

    Such rows exist only where foreign-key checks were off (SQLite's default outside
    Django, MySQL's FOREIGN_KEY_CHECKS=0) or after SQL by hand. They blacklist nothing,
    since simplejwt finds blacklist rows through their token, and the purge by expiry
    never meets them (they have none). Primary-key ranges, one transaction each, like
    the purge itself; ``on_deleted`` hears each committed range, ``should_stop`` is
    asked after it.
    """
    orphans = BlacklistedToken.objects.using(using).filter(
        ~Exists(OutstandingToken.objects.using(using).filter(pk=OuterRef("token_id")))
    )
    size = min(batch_size or ORPHAN_BATCH, ORPHAN_BATCH)
    last_pk = 0
    total = 0
    while True:
        window = orphans.filter(pk__gt=last_pk).order_by("pk")[:size]
        upper = window.aggregate(upper=Max("pk"))["upper"]
        if upper is None:
            break
        with transaction.atomic(using=using):
            removed = orphans.filter(pk__gt=last_pk, pk__lte=upper)._raw_delete(using)
        total += removed
        last_pk = upper
        if on_deleted is not None:
            on_deleted(Deleted(orphans=removed))
        if should_stop is not None and should_stop():
            break
    return total
