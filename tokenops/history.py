"""The purge history: one PurgeRun row per purge, written so that it never breaks the purge.

A real purge inserts its row as "running" before it touches a token, beats a heartbeat
while it deletes, and ends the row as ok, failed or interrupted; one that found another
purge holding the database's lock writes a single "skipped" row instead. A process killed
outright (SIGKILL, power loss) cannot write; its row stays "running" with a stale
heartbeat, which readers show as interrupted and the next purge writes as such. A dry
run makes exactly one write: its row, inserted at the end.

Every write is in its own savepoint and every error is caught: a read-only database or
an unmigrated tokenops table costs the history row, never the purge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.utils.translation import gettext as _

from .console import Terminated
from .counting import count_tokens
from .dbtime import as_utc, db_now, to_db
from .errors import TokenopsError, first_line
from .models import PurgeRun

if TYPE_CHECKING:
    from .counting import TokenCounts
    from .cutoff import Cutoff
    from .probes import Watermark
    from .purging import Deleted

logger = logging.getLogger("tokenops")

# How often a running purge refreshes its heartbeat (the first batch always does): the
# admin page's live progress reads it, so a few seconds.
HEARTBEAT_SECONDS = 2.0
# Dry runs kept in the history (the newest); each dry run prunes the older ones, so dry
# runs, which anyone with view access can start, never push real purges out of sight.
DRY_RUNS_KEPT = 10
Outcome = PurgeRun.Outcome


def stale_before(now: datetime, running_timeout: timedelta) -> datetime:
    """A "running" row with no heartbeat since this moment (DB form) was interrupted."""
    return to_db(now - running_timeout)


class PurgeRecorder:
    """Context manager around one purge that keeps its PurgeRun row true.

    ``running_timeout`` and ``keep`` are TOKENOPS' RUNNING_TIMEOUT and HISTORY_KEEP, for
    the housekeeping a real purge does first.
    """

    def __init__(
        self,
        using: str,
        *,
        trigger: str,
        started_by: str,
        dry_run: bool,
        older_than: timedelta,
        batch_size: int | None,
        running_timeout: timedelta,
        keep: timedelta | None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.using = using
        self.running_timeout = running_timeout
        self.keep = keep
        self.warn = warn
        self.problem: str | None = None
        # The rowcounts of the committed batches: this run's own work, whatever else runs.
        self.deleted_outstanding = 0
        self.deleted_blacklisted = 0
        self.last_beat: float | None = None
        self.cutoff: Cutoff | None = None
        try:
            self.outer_atomic = connections[using].in_atomic_block
        except Exception:  # an unknown alias: the purge itself will say so
            self.outer_atomic = False
        now = db_now()
        self.row = PurgeRun(
            started_at=now,
            heartbeat_at=now,
            trigger=trigger,
            started_by=(started_by or "")[:150],
            dry_run=dry_run,
            database=using,
            older_than=older_than,
            batch_size=batch_size,
        )

    def __enter__(self) -> PurgeRecorder:
        try:
            if not self.row.dry_run and self._write(self._save):
                self._housekeeping()
        except BaseException as exc:
            # A signal after the row was inserted: Python skips __exit__ when __enter__
            # raises, and the row would claim "running" until RUNNING_TIMEOUT.
            if self.row.pk is not None:
                self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        row = self.row
        row.finished_at = row.heartbeat_at = db_now()
        if exc is None:
            row.outcome = Outcome.OK
        else:
            # Left nothing purgeable only if the count after says so (below).
            row.complete = False
            self.reconnect_if_broken(fresh=isinstance(exc, KeyboardInterrupt))
            self._count_deleted()
            if isinstance(exc, Exception):
                row.outcome = Outcome.FAILED
                row.error = first_line(exc)
            else:
                row.outcome = Outcome.INTERRUPTED
                row.error = (
                    _("Stopped by SIGTERM.")
                    if isinstance(exc, Terminated)
                    else _("Interrupted (Ctrl+C or SIGINT).")
                )
        if self._write(self._save) and row.dry_run:
            self._write(self._prune_dry_runs)
        # A failed purge says what failed; a second line about its history would bury it.
        if exc is None and self.problem:
            message = _("the purge history was not recorded in database %(db)s: %(error)s") % {
                "db": repr(self.using),
                "error": self.problem,
            }
            if self.warn is not None:
                self.warn(message)
            else:
                logger.warning("%s", message)
        return False

    def counted(self, cutoff: Cutoff, before: TokenCounts) -> None:
        self.cutoff = cutoff
        row = self.row
        row.cutoff = to_db(cutoff.moment)
        row.cutoff_reason = cutoff.reason
        row.outstanding_before = before.outstanding.total
        row.blacklisted_before = before.blacklisted.total
        row.outstanding_purgeable = before.outstanding.purgeable
        row.blacklisted_purgeable = before.blacklisted.purgeable
        if not row.dry_run:
            self._write(self._save)

    def finished(
        self,
        deleted: Deleted,
        after: TokenCounts,
        *,
        complete: bool = True,
        mark: Watermark | None = None,
    ) -> None:
        row = self.row
        row.complete = complete
        if mark is not None:
            row.last_token_id = mark.last_token_id
            row.next_expiry = None if mark.next_expiry is None else to_db(mark.next_expiry)
        row.outstanding_deleted = deleted.outstanding
        row.blacklisted_deleted = deleted.blacklisted
        row.outstanding_after = after.outstanding.total
        row.blacklisted_after = after.blacklisted.total

    def reconnect_if_broken(self, *, fresh: bool = False) -> None:
        """Give the final writes a working connection after an interruption.

        A signal can land between a query and its result ("commands out of sync" on
        MySQL) or inside a batch's atomic block after its COMMIT, leaving Django's
        transaction state behind the database's. Outside a caller's own transaction,
        drop such a connection and write on a fresh one.

        ``fresh`` (after a signal) drops a server connection even when it looks usable:
        psycopg answers Ctrl+C in a query with a cancel request, which can reach the server
        after that query ended and cancel the next statement, the history row's own.
        """
        try:
            connection = connections[self.using]
            if self.outer_atomic:
                return
            if connection.in_atomic_block:
                connection.close()  # the half-done block: closing rolls it back
                connections[self.using] = connections.create_connection(self.using)
            elif connection.connection is not None and (
                (fresh and connection.vendor != "sqlite") or not connection.is_usable()
            ):
                connection.close()
        except Exception:  # an unknown alias or a dead server: the writes will say so
            return

    def _count_deleted(self) -> None:
        """What a stopped purge deleted: the rowcounts of its committed batches.

        Never the drop in purgeable rows: another writer (a purge without the lock, the
        app's own cleanup) can move that. A batch cut off mid-transaction rolled back and
        was never counted. The totals after are counted afresh when the database answers.
        """
        row = self.row
        if row.dry_run or self.cutoff is None or row.outstanding_purgeable is None:
            return
        row.outstanding_deleted = self.deleted_outstanding
        row.blacklisted_deleted = self.deleted_blacklisted
        counted: list[TokenCounts] = []
        if not self._write(lambda: counted.append(count_tokens(self.using, self.cutoff))):
            return  # the database may be what failed
        row.outstanding_after = counted[0].outstanding.total
        row.blacklisted_after = counted[0].blacklisted.total
        row.complete = counted[0].nothing_purgeable

    def beat(self, deleted: Deleted) -> None:
        """Count a committed batch; refresh the heartbeat at most every HEARTBEAT_SECONDS."""
        self.deleted_outstanding += deleted.outstanding
        self.deleted_blacklisted += deleted.blacklisted
        clock = time.monotonic()
        if self.last_beat is not None and clock - self.last_beat < HEARTBEAT_SECONDS:
            return
        self.last_beat = clock
        if self.row.pk is not None:
            self._write(self._heartbeat)

    def _save(self) -> None:
        self.row.save(using=self.using)

    def _heartbeat(self) -> None:
        PurgeRun.objects.using(self.using).filter(pk=self.row.pk).update(
            heartbeat_at=db_now(),
            outstanding_deleted=self.deleted_outstanding,
            blacklisted_deleted=self.deleted_blacklisted,
        )

    def _prune_dry_runs(self) -> None:
        dry_runs = PurgeRun.objects.using(self.using).filter(dry_run=True)
        kept = list(dry_runs.values_list("pk", flat=True)[:DRY_RUNS_KEPT])
        dry_runs.exclude(pk__in=kept).delete()

    def skipped(self, reason: str) -> None:
        """Record a run that found another purge holding the lock: it did nothing."""
        row = self.row
        row.finished_at = row.heartbeat_at = db_now()
        row.outcome = Outcome.SKIPPED
        row.error = reason
        self._write(self._save)

    def _housekeeping(self) -> None:
        """Close the rows of killed runs and drop rows older than HISTORY_KEEP.

        Each write is its own transaction that starts by writing. On SQLite, a
        transaction that reads and then writes cannot wait for the app's write lock
        (SQLite answers "database is locked" at once to avoid a deadlock), so the
        stale rows are read outside any transaction.
        """
        now = datetime.now(UTC)  # aware: to_db() makes it what the field holds
        runs = PurgeRun.objects.using(self.using).exclude(pk=self.row.pk)
        try:
            limit = stale_before(now, self.running_timeout)
            stale = list(runs.filter(outcome=Outcome.RUNNING, heartbeat_at__lt=limit))
        except Exception as exc:
            self.problem = self.problem or first_line(exc)
            stale = []
        for row in stale:
            row.outcome = Outcome.INTERRUPTED
            row.finished_at = row.heartbeat_at
            row.error = stale_error(row)
            self._write(
                lambda row=row: row.save(
                    using=self.using, update_fields=["outcome", "finished_at", "error"]
                )
            )
        if self.keep is not None:
            cutoff = to_db(now - self.keep)
            self._write(lambda: runs.filter(started_at__lt=cutoff).delete())

    def _write(self, action: Callable[[], None]) -> bool:
        try:
            with transaction.atomic(using=self.using):
                action()
        except Exception as exc:
            if self.problem is None:
                self.problem = first_line(exc)
            return False
        return True


def running_purge(using: str, running_timeout: timedelta) -> PurgeRun | None:
    """The newest real purge in ``using``'s history still "running" and alive, if readable."""

    def read() -> PurgeRun | None:
        limit = stale_before(datetime.now(UTC), running_timeout)
        return (
            PurgeRun.objects.using(using)
            .filter(outcome=Outcome.RUNNING, dry_run=False, heartbeat_at__gte=limit)
            .order_by("-started_at", "-pk")
            .first()
        )

    found, _error = _read(using, read)
    return found


def latest_real_run(using: str, running_timeout: timedelta) -> PurgeRun | None:
    """The latest real purge that ended (or died): not a dry run, not skipped, not alive."""

    def read() -> PurgeRun | None:
        limit = stale_before(datetime.now(UTC), running_timeout)
        runs = (
            PurgeRun.objects.using(using)
            .filter(dry_run=False)
            .exclude(outcome=Outcome.SKIPPED)
            .exclude(outcome=Outcome.RUNNING, heartbeat_at__gte=limit)
            .order_by("-started_at", "-pk")
        )
        return runs.first()

    found, error = _read(using, read)
    if error:
        raise TokenopsError(error)
    return found


def stale_error(row: PurgeRun) -> str:
    return _(
        "No sign of life since %(moment)s: the process was killed or lost "
        "(out of memory, reboot, SIGKILL)."
    ) % {"moment": as_utc(row.heartbeat_at).strftime("%Y-%m-%d %H:%M:%S UTC")}


def _read(using: str, reader: Callable[[], Any]) -> tuple[Any, str]:
    """Run a history query; a missing table or a dead connection is an answer, not a crash."""
    try:
        with transaction.atomic(using=using):
            return reader(), ""
    except Exception as exc:
        return None, first_line(exc)


def last_success(using: str) -> tuple[PurgeRun | None, str]:
    """The latest real purge that succeeded (None: none recorded), and "" or why the
    history cannot be read."""

    def read() -> PurgeRun | None:
        return (
            PurgeRun.objects.using(using)
            .filter(outcome=Outcome.OK, dry_run=False)
            .order_by("-started_at", "-pk")
            .first()
        )

    return _read(using, read)


def shown_outcome(run: PurgeRun, running_timeout: timedelta | None) -> str:
    """The outcome as it really is: a "running" row silent for ``running_timeout`` died."""
    if running_timeout is None:
        return run.outcome
    return run.outcome_at(stale_before(datetime.now(UTC), running_timeout))


def recent_runs(using: str, limit: int, running_timeout: timedelta | None) -> list[PurgeRun]:
    """The last runs, newest first; [] when unreadable.

    Each carries its real outcome as ``shown_class`` (the value) and ``shown_outcome``
    (its label), for the admin page.
    """
    found, _error = _read(using, lambda: list(PurgeRun.objects.using(using)[:limit]))
    runs = found or []
    for run in runs:
        run.shown_class = shown_outcome(run, running_timeout)
        run.shown_outcome = Outcome(run.shown_class).label
    return runs
