"""The orchestrator: what a purge and a report do, in order, whoever asks for them.

Like ``clearsessions`` calling ``SessionStore.clear_expired()``, the commands, the Celery
task and the admin page pass only what their user gave; every default comes from
``TOKENOPS`` here, read once. Data flows one way: settings -> readiness -> safe cutoff ->
counts -> history "counted" -> delete -> counts -> history "finished" -> a result the
caller renders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import DEFAULT_DB_ALIAS

from .app_settings import get_settings
from .checks import ensure_database, ensure_ready
from .counting import TokenCounts, UserTokens, count_tokens, top_users
from .cutoff import FROM_OPTION, FROM_SETTING, Cutoff, safe_cutoff
from .errors import TokenopsError
from .history import PurgeRecorder, PurgeStatus, purge_status, recent_runs, shown_outcome
from .models import PurgeRun
from .purging import BatchStats, Deleted, Progress, delete_purgeable

logger = logging.getLogger("tokenops")


@dataclass(frozen=True)
class PurgeRequest:
    """A purge as its starter asked for it; None takes the TOKENOPS default."""

    database: str = DEFAULT_DB_ALIAS
    older_than: timedelta | None = None
    batch_size: int | None = None
    dry_run: bool = False
    trigger: str = PurgeRun.Trigger.COMMAND
    started_by: str = ""


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


@dataclass(frozen=True)
class ReportRequest:
    """A report as its reader asked for it; None takes the TOKENOPS default."""

    database: str = DEFAULT_DB_ALIAS
    older_than: timedelta | None = None
    top: int | None = None
    # The admin page also lists the last runs and charts active tokens by time left.
    recent_runs: int = 0
    by_time_left: bool = False


@dataclass(frozen=True)
class Report:
    database: str
    cutoff: Cutoff
    counts: TokenCounts
    top_users: list[UserTokens]
    history: PurgeStatus | None = None
    runs: tuple[PurgeRun, ...] = ()


def _older_than(asked: timedelta | None, setting: timedelta) -> tuple[timedelta, str]:
    """The margin to keep and where it came from: what the starter asked for, else TOKENOPS."""
    if asked is None:
        return setting, FROM_SETTING
    return asked, FROM_OPTION


def run_purge(
    request: PurgeRequest,
    *,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> PurgeResult:
    """Count, delete what is purgeable (unless a dry run), count again; record it.

    ``progress`` is drawn while rows go; ``warn`` receives the one-line warning when the
    history row could not be written (default: the "tokenops" logger).
    """
    # A bad TOKENOPS value or a mistyped SQLite path fails before any history row is written.
    conf = get_settings()
    using = request.database
    ensure_database(using)
    older_than, source = _older_than(request.older_than, conf.older_than)
    batch_size = request.batch_size or conf.batch_size
    recorder = PurgeRecorder(
        using,
        trigger=request.trigger,
        started_by=request.started_by,
        dry_run=request.dry_run,
        older_than=older_than,
        batch_size=batch_size,
        running_timeout=conf.running_timeout,
        keep=conf.history_keep,
        warn=warn,
    )
    with recorder:
        started_at = datetime.now(UTC)
        clock = time.monotonic()
        ensure_ready(using)
        cutoff = safe_cutoff(
            older_than,
            older_than_source=source,
            sliding_tokens=conf.sliding_tokens,
            now=started_at,
        )
        before = count_tokens(using, cutoff)
        recorder.counted(cutoff, before)
        if request.dry_run:
            stats, after = BatchStats(), before
        else:
            stats = _delete(
                using,
                cutoff,
                before.outstanding.purgeable,
                batch_size=batch_size,
                batch_seconds=conf.batch_seconds,
                progress=progress,
                recorder=recorder,
            )
            after = count_tokens(using, cutoff)
        recorder.finished(stats.deleted, after)
    result = PurgeResult(
        dry_run=request.dry_run,
        database=using,
        cutoff=cutoff,
        before=before,
        after=after,
        stats=stats,
        seconds=time.monotonic() - clock,
        started_at=started_at,
    )
    _log(result)
    return result


def _delete(
    using: str,
    cutoff: Cutoff,
    total: int,
    *,
    batch_size: int | None,
    batch_seconds: float | None,
    progress: Progress | None,
    recorder: PurgeRecorder,
) -> BatchStats:
    """The engine, with each committed batch told to the history and the progress bar."""

    def on_batch(rows: int) -> None:
        recorder.beat(rows)
        if progress is not None:
            progress.advance(rows)

    try:
        if progress is not None:
            progress.start(total)
        return delete_purgeable(
            using, cutoff, batch_size=batch_size, batch_seconds=batch_seconds, on_batch=on_batch
        )
    finally:
        if progress is not None:
            progress.close()


def _log(result: PurgeResult) -> None:
    before, deleted = result.before, result.deleted
    logger.info(
        "token purge%s on %r: cutoff %s (%s), %s outstanding and %s blacklisted rows %s in %.2f s",
        " (dry run)" if result.dry_run else "",
        result.database,
        result.cutoff.moment.isoformat(),
        result.cutoff.reason,
        before.outstanding.purgeable if result.dry_run else deleted.outstanding,
        before.blacklisted.purgeable if result.dry_run else deleted.blacklisted,
        "would be deleted" if result.dry_run else "deleted",
        result.seconds,
    )


def build_report(request: ReportRequest) -> Report:
    """Counts, top users and what the history says, without writing anything."""
    conf = get_settings()
    using = request.database
    ensure_ready(using)
    older_than, source = _older_than(request.older_than, conf.older_than)
    cutoff = safe_cutoff(older_than, older_than_source=source, sliding_tokens=conf.sliding_tokens)
    counts = count_tokens(using, cutoff, by_time_left=request.by_time_left)
    top = conf.report_top if request.top is None else request.top
    runs = (
        recent_runs(using, request.recent_runs, conf.running_timeout) if request.recent_runs else []
    )
    return Report(
        database=using,
        cutoff=cutoff,
        counts=counts,
        top_users=top_users(using, top),
        history=purge_status(
            using, cutoff.now, counts.outstanding.purgeable, warn_after=conf.purge_warn_after
        ),
        runs=tuple(runs),
    )


def outcome_shown(run: PurgeRun) -> str:
    """A run's real outcome (a silent "running" row was killed); raw if TOKENOPS is bad."""
    try:
        timeout: timedelta | None = get_settings().running_timeout
    except TokenopsError:
        timeout = None
    return shown_outcome(run, timeout)
