"""The orchestrator: what a purge and a report do, in order, whoever asks for them.

Like ``clearsessions`` calling ``SessionStore.clear_expired()``, the commands, the Celery
task and the admin page pass only what their user gave; every default comes from
``TOKENOPS`` here (``get_settings()``, validated whole). Data flows one way: settings ->
readiness -> safe cutoff -> counts -> history "counted" -> delete -> counts -> history
"finished" -> a result the caller renders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils.translation import gettext as _

from .app_settings import TokenopsSettings, get_settings
from .checks import ensure_database, ensure_ready
from .console import interrupt_behind
from .counting import TokenCounts, UserTokens, count_tokens, top_users
from .cutoff import FROM_OPTION, FROM_SETTING, Cutoff, safe_cutoff
from .dbtime import as_utc
from .errors import PurgeSkipped, TokenopsError, cause_of, unreachable
from .history import (
    PurgeRecorder,
    last_success,
    latest_real_run,
    recent_runs,
    running_purge,
    shown_outcome,
)
from .locking import purge_lock
from .models import PurgeRun
from .probes import Watermark, any_purgeable, any_purgeable_since, purgeable_in_range, watermark
from .purging import IN_DOUBT, BatchStats, Deleted, InDoubt, Progress, delete_purgeable
from .sweeping import SweepStatus, sweep_status, swept_within

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
    # Seconds after which the purge stops at the end of a batch; None: TOKENOPS default.
    max_seconds: float | None = None
    # A cutoff the starter already showed (the admin's confirmation page): used as it is,
    # unless the safe cutoff taken when the purge starts is earlier (settings changed).
    cutoff_at: datetime | None = None


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
    # The time budget the run had (None: none).
    max_seconds: float | None = None

    @property
    def deleted(self) -> Deleted:
        return self.stats.deleted

    @property
    def remaining(self) -> Deleted:
        """Rows still purgeable under this run's cutoff when it ended (a dry run: all)."""
        return Deleted(self.after.outstanding.purgeable, self.after.blacklisted.purgeable)

    @property
    def complete(self) -> bool:
        """Nothing purgeable is left: False after a run cut short (and a dry run's rows)."""
        return self.after.nothing_purgeable

    @property
    def stopped_early(self) -> bool:
        """The time budget (or a Celery soft time limit) ended the run with rows left."""
        return self.stats.stopped and not self.complete


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
class PurgeStatus:
    """What the history says about the last successful purge, for reports and the admin."""

    available: bool
    error: str
    last_success: PurgeRun | None
    # The verdict of ``_upkeep``, the rule ``token_report --check`` applies: stale or never.
    overdue: bool
    # When the last success ended (None: none recorded), what the warning counts from.
    since: datetime | None
    purgeable: int
    now: datetime
    # PURGE_WARN_AFTER, which the warning names when no purge ever succeeded.
    warn_after: timedelta

    @property
    def days_since(self) -> int | None:
        return None if self.since is None else (self.now - self.since).days


@dataclass(frozen=True)
class Report:
    database: str
    cutoff: Cutoff
    counts: TokenCounts
    top_users: list[UserTokens]
    history: PurgeStatus | None = None
    runs: tuple[PurgeRun, ...] = ()
    # In-app sweeps: on or off, and what they deleted (the tally).
    sweeps: SweepStatus | None = None


def _older_than(asked: timedelta | None, setting: timedelta) -> tuple[timedelta, str]:
    """The margin to keep and where it came from: what the starter asked for, else TOKENOPS."""
    if asked is None:
        return setting, FROM_SETTING
    return asked, FROM_OPTION


def _report_cutoff(request: ReportRequest, conf: TokenopsSettings) -> Cutoff:
    """The safe cutoff a report or a check counts with, taken now."""
    older_than, source = _older_than(request.older_than, conf.older_than)
    return safe_cutoff(older_than, older_than_source=source, sliding_tokens=conf.sliding_tokens)


def run_purge(
    request: PurgeRequest,
    *,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    stop_on: tuple[type[BaseException], ...] = (),
) -> PurgeResult:
    """Count, delete what is purgeable (unless a dry run), count again; record it.

    ``progress`` is drawn while rows go; ``warn`` receives the one-line warning when the
    history row could not be written (default: the "tokenops" logger). A real purge holds
    the database's purge lock: when another purge has it, the run is recorded as skipped
    and PurgeSkipped is raised, nothing deleted. ``stop_requested`` is asked before the
    first batch and after each one (Celery's soft time limit, turned into a flag); True
    ends the deletion like the time budget does. ``stop_on`` exceptions raised while rows
    go end it the same way.
    """
    # A bad TOKENOPS value or a mistyped SQLite path fails before any history row is written.
    conf = get_settings()
    using = request.database
    ensure_database(using)
    older_than, source = _older_than(request.older_than, conf.older_than)
    batch_size = request.batch_size or conf.batch_size
    max_seconds = conf.max_seconds if request.max_seconds is None else request.max_seconds
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
    lock: AbstractContextManager[bool] = nullcontext(True)
    if not request.dry_run:
        _connect(using)
        lock = purge_lock(using)
    with lock as held:
        if not held:
            _skip(recorder, using, conf.running_timeout)
        return _purge(
            request,
            recorder,
            older_than=older_than,
            source=source,
            batch_size=batch_size,
            batch_seconds=conf.batch_seconds,
            batch_seconds_idle=conf.batch_seconds_idle,
            sliding_tokens=conf.sliding_tokens,
            max_seconds=max_seconds,
            progress=progress,
            stop_requested=stop_requested,
            stop_on=stop_on,
        )


def _connect(using: str) -> None:
    """Reach the server before asking it for the lock: one clear line when it is down."""
    try:
        connections[using].ensure_connection()
    except DatabaseError as exc:
        raise TokenopsError(unreachable(using, exc)) from exc


def skipped_message(using: str, holder: PurgeRun | None) -> str:
    """Who holds the purge lock of ``using`` and since when, as its history row says."""
    if holder is None:
        return _("Another purge is running on database '%(database)s': nothing was done.") % {
            "database": using
        }
    who = holder.get_trigger_display()
    if holder.started_by:
        who = f"{who}, {holder.started_by}"
    return _(
        # Translators: %(who)s is "command, svc-backup" or "Celery task".
        "Another purge is running on database '%(database)s' since %(moment)s (%(who)s): "
        "nothing was done."
    ) % {
        "database": using,
        "moment": as_utc(holder.started_at).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "who": who,
    }


def _skip(recorder: PurgeRecorder, using: str, running_timeout: timedelta) -> NoReturn:
    message = skipped_message(using, running_purge(using, running_timeout))
    recorder.skipped(message)
    logger.info("token purge on %r skipped: %s", using, message)
    raise PurgeSkipped(message)


def _purge(
    request: PurgeRequest,
    recorder: PurgeRecorder,
    *,
    older_than: timedelta,
    source: str,
    batch_size: int | None,
    batch_seconds: float | None,
    batch_seconds_idle: float | None,
    sliding_tokens: str | bool,
    max_seconds: float | None,
    progress: Progress | None,
    stop_requested: Callable[[], bool] | None,
    stop_on: tuple[type[BaseException], ...],
) -> PurgeResult:
    using = request.database
    with recorder:
        started_at = datetime.now(UTC)
        clock = time.monotonic()
        ensure_ready(using)
        cutoff = safe_cutoff(
            older_than,
            older_than_source=source,
            sliding_tokens=sliding_tokens,
            now=started_at,
        )
        if request.cutoff_at is not None and request.cutoff_at < cutoff.moment:
            # Never later than the safe cutoff now: no accepted token is ever deleted.
            cutoff = replace(cutoff, margin=started_at - request.cutoff_at)
        before = count_tokens(using, cutoff)
        recorder.counted(cutoff, before)
        if request.dry_run:
            stats, after = BatchStats(), before
        else:
            deadline = None if max_seconds is None else clock + max_seconds

            def should_stop() -> bool:
                if stop_requested is not None and stop_requested():
                    return True
                return deadline is not None and time.monotonic() >= deadline

            if stop_requested is not None and stop_requested():
                stats = BatchStats(stopped=True)
            else:
                stats = _delete(
                    using,
                    cutoff,
                    before.outstanding.purgeable,
                    batch_size=batch_size,
                    batch_seconds=batch_seconds,
                    batch_seconds_idle=batch_seconds_idle,
                    progress=progress,
                    recorder=recorder,
                    should_stop=should_stop,
                    stop_on=stop_on,
                )
            after = count_tokens(using, cutoff)
        complete = after.nothing_purgeable
        recorder.finished(
            stats.deleted,
            after,
            complete=complete,
            # What lets --check skip the old rows: only a complete real purge can vouch for them.
            mark=watermark(using) if complete and not request.dry_run else None,
        )
    result = PurgeResult(
        dry_run=request.dry_run,
        database=using,
        cutoff=cutoff,
        before=before,
        after=after,
        stats=stats,
        seconds=time.monotonic() - clock,
        started_at=started_at,
        max_seconds=max_seconds,
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
    batch_seconds_idle: float | None,
    progress: Progress | None,
    recorder: PurgeRecorder,
    should_stop: Callable[[], bool] | None = None,
    stop_on: tuple[type[BaseException], ...] = (),
) -> BatchStats:
    """The engine, with each committed batch told to the history and the progress bar.

    A ``stop_on`` exception ends the deletion in order: the batch it cut rolled back, the
    committed ones are what the stats say.
    """
    committed: list[Deleted] = []

    def on_deleted(deleted: Deleted) -> None:
        committed.append(deleted)
        recorder.beat(deleted)
        if progress is not None:
            progress.advance(deleted.outstanding)

    try:
        if progress is not None:
            progress.start(total)
        return delete_purgeable(
            using,
            cutoff,
            batch_size=batch_size,
            batch_seconds=batch_seconds,
            batch_seconds_idle=batch_seconds_idle,
            on_deleted=on_deleted,
            should_stop=should_stop,
        )
    except BaseException as exc:
        # A signal may have cut a batch's COMMIT: settle whether it went through first.
        settled = _settle_in_doubt(using, cutoff, exc, recorder)
        if settled is not None:
            committed.append(settled)
            recorder.beat(settled)
        if cause_of(exc, stop_on) is None:
            interrupt = interrupt_behind(exc)
            if interrupt is not None and interrupt is not exc:
                # Ctrl+C or SIGTERM inside the driver's wait surfaces as the database error
                # it caused ("connection in transaction status ACTIVE"): it is still an
                # interruption, reported as one.
                raise interrupt from None
            raise
        logger.warning("token purge on %r stopped: %s", using, exc.__class__.__name__)
        # The signal may have cut a query between sending it and reading its answer.
        recorder.reconnect_if_broken()
        return BatchStats(
            deleted=Deleted(
                outstanding=sum(d.outstanding for d in committed),
                blacklisted=sum(d.blacklisted for d in committed),
            ),
            batches=len(committed),
            stopped=True,
        )
    finally:
        if progress is not None:
            progress.close()


def _settle_in_doubt(
    using: str, cutoff: Cutoff, exc: BaseException, recorder: PurgeRecorder
) -> Deleted | None:
    """The rows of a batch whose COMMIT was cut, if it committed; None if not (or unknown)."""
    doubt = getattr(exc, IN_DOUBT, None)
    if not isinstance(doubt, InDoubt):
        return None
    recorder.reconnect_if_broken()
    for _attempt in range(2):
        try:
            if purgeable_in_range(using, cutoff, doubt.lower, doubt.upper):
                return None  # rolled back: the rows are all there
            return doubt.deleted
        except DatabaseError:
            with suppress(DatabaseError):
                connections[using].close()
    return None


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
    cutoff = _report_cutoff(request, conf)
    counts = count_tokens(using, cutoff, by_time_left=request.by_time_left)
    top = conf.report_top if request.top is None else request.top
    runs = (
        recent_runs(using, request.recent_runs, conf.running_timeout) if request.recent_runs else []
    )
    sweeps = sweep_status(using, conf, cutoff.now)
    purgeable = counts.outstanding.purgeable
    last, error = last_success(using)
    if error:
        history = PurgeStatus(
            False, error, None, False, None, purgeable, cutoff.now, conf.purge_warn_after
        )
    else:
        # The exact count answers "anything purgeable?": no probe unless it is needed.
        verdict = _upkeep(using, cutoff, last, conf, purgeable=purgeable > 0, sweeps=sweeps)
        since = None if last is None else _ended_at(last)
        history = PurgeStatus(
            True, "", last, verdict.overdue, since, purgeable, cutoff.now, conf.purge_warn_after
        )
    return Report(
        database=using,
        cutoff=cutoff,
        counts=counts,
        top_users=top_users(using, top),
        history=history,
        runs=tuple(runs),
        sweeps=sweeps,
    )


def _sweeps_keep_up(using: str, cutoff: Cutoff, sweeps: SweepStatus, warn_after: timedelta) -> bool:
    """Sweeps are upkeep: they deleted rows within ``warn_after``, and no purgeable row
    expired before that (so none has waited longer than a scheduled purge would allow)."""
    return swept_within(sweeps, cutoff.now, warn_after) and not any_purgeable(
        using, cutoff, expired_before=cutoff.now - warn_after
    )


def running_timeout() -> timedelta | None:
    """TOKENOPS["RUNNING_TIMEOUT"], or None when TOKENOPS is invalid: a page that cannot
    build its report still shows the history, with the outcomes as recorded."""
    try:
        return get_settings().running_timeout
    except TokenopsError:
        return None


def purge_runs(database: str, limit: int) -> list[PurgeRun]:
    """The last runs with their real outcome, for a page whose report could not be built."""
    return recent_runs(database, limit, running_timeout())


def outcome_shown(run: PurgeRun) -> str:
    """A run's real outcome (a silent "running" row was killed); raw if TOKENOPS is bad."""
    return shown_outcome(run, running_timeout())


# What --check found; ATTENTION_REASONS need a person.
HEALTHY_RECENT = "recent"  # a real purge succeeded within PURGE_WARN_AFTER
HEALTHY_NOTHING = "nothing"  # nothing is purgeable
HEALTHY_YOUNG = "young"  # never purged, and no purgeable token expired before PURGE_WARN_AFTER
# No recent purge, but in-app sweeps deleted rows within PURGE_WARN_AFTER and no purgeable
# token expired before it.
HEALTHY_SWEPT = "swept"
ATTENTION_FAILED = "failed"  # the latest real purge failed or was interrupted
ATTENTION_STALE = "stale"  # the last success is older than PURGE_WARN_AFTER
ATTENTION_NEVER = "never"  # no success ever, tokens purgeable for PURGE_WARN_AFTER
ATTENTION_REASONS = frozenset({ATTENTION_FAILED, ATTENTION_STALE, ATTENTION_NEVER})


@dataclass(frozen=True)
class Health:
    """The verdict of ``token_report --check`` and what it rests on."""

    database: str
    reason: str
    now: datetime
    # The latest real purge that ended (or died), with its real outcome.
    latest: PurgeRun | None
    latest_outcome: str
    # The moment the verdict counts from: the last success or the failed run's start.
    since: datetime | None
    warn_after: timedelta
    # Purgeable rows and no success within PURGE_WARN_AFTER (``_upkeep``: stale or never),
    # whatever the latest run's outcome: a failed latest run is its own reason.
    overdue: bool

    @property
    def attention(self) -> bool:
        return self.reason in ATTENTION_REASONS


@dataclass(frozen=True)
class Upkeep:
    """Whether purges (or in-app sweeps) keep up: the one rule behind ``token_report``'s
    warning, ``--check`` and the ``tokenops_purge_overdue`` metric."""

    # HEALTHY_RECENT, HEALTHY_NOTHING, HEALTHY_YOUNG, HEALTHY_SWEPT, ATTENTION_STALE or
    # ATTENTION_NEVER.
    reason: str
    # The last success's end, or the hour sweeps last removed rows (HEALTHY_SWEPT).
    since: datetime | None

    @property
    def overdue(self) -> bool:
        return self.reason in (ATTENTION_STALE, ATTENTION_NEVER)


def _upkeep(
    using: str,
    cutoff: Cutoff,
    last: PurgeRun | None,
    conf: TokenopsSettings,
    *,
    purgeable: bool | None = None,
    sweeps: SweepStatus | None = None,
) -> Upkeep:
    """Overdue: rows are purgeable and no real purge succeeded within PURGE_WARN_AFTER
    (since ``last``); with none ever recorded, a purgeable token expired more than
    PURGE_WARN_AFTER ago. Sweeps that keep up count as upkeep.

    ``purgeable``: whether anything is purgeable, when the caller counted it (the report);
    None asks the outstanding table (one EXISTS). ``sweeps``: their status, if read.
    """
    now = cutoff.now
    warn_after = conf.purge_warn_after

    def swept() -> SweepStatus:
        return sweeps if sweeps is not None else sweep_status(using, conf, now)

    if last is not None:
        since = _ended_at(last)
        if now - since <= warn_after:
            return Upkeep(HEALTHY_RECENT, since)
        if purgeable is None:
            purgeable = any_purgeable_since(using, cutoff, _recorded_watermark(last))
        if not purgeable:
            return Upkeep(HEALTHY_NOTHING, since)
        status = swept()
        if _sweeps_keep_up(using, cutoff, status, warn_after):
            return Upkeep(HEALTHY_SWEPT, status.last_swept)
        return Upkeep(ATTENTION_STALE, since)
    # Never purged: overdue once a purgeable token expired more than warn_after ago.
    # (Whether younger ones are purgeable changes nothing: it would cost a second scan.)
    if purgeable is not False and any_purgeable(using, cutoff, expired_before=now - warn_after):
        return Upkeep(ATTENTION_NEVER, None)
    status = swept()
    if swept_within(status, now, warn_after):
        return Upkeep(HEALTHY_SWEPT, status.last_swept)
    return Upkeep(HEALTHY_YOUNG, None)


def _ended_at(run: PurgeRun) -> datetime:
    return as_utc(run.finished_at or run.started_at)


def check_health(request: ReportRequest) -> Health:
    """Healthy or not, from the history and at most one query of each kind on the tokens.

    The history row of the latest real purge answers most checks; only when it does not
    (no recent success) is the token table asked whether anything is purgeable. After a
    failed run, ``overdue`` is still told from the last success, as the report tells it.
    """
    conf = get_settings()
    using = request.database
    ensure_ready(using)
    cutoff = _report_cutoff(request, conf)
    now = cutoff.now
    warn_after = conf.purge_warn_after
    latest = latest_real_run(using, conf.running_timeout)
    outcome = "" if latest is None else shown_outcome(latest, conf.running_timeout)

    if latest is not None and outcome != PurgeRun.Outcome.OK:
        last, error = last_success(using)
        if error:
            raise TokenopsError(error)
        overdue = _upkeep(using, cutoff, last, conf).overdue
        since = as_utc(latest.started_at)
        return Health(using, ATTENTION_FAILED, now, latest, outcome, since, warn_after, overdue)
    # The latest real purge, when there is one, is the last success.
    verdict = _upkeep(using, cutoff, latest, conf)
    return Health(
        using, verdict.reason, now, latest, outcome, verdict.since, warn_after, verdict.overdue
    )


def _recorded_watermark(run: PurgeRun) -> Watermark | None:
    """Where ``run`` left the outstanding table, if it was a complete purge that said so."""
    if not run.complete or run.last_token_id is None:
        return None
    expiry = None if run.next_expiry is None else as_utc(run.next_expiry)
    return Watermark(run.last_token_id, expiry)


@dataclass(frozen=True)
class Metrics:
    """What ``token_report --format openmetrics`` exposes."""

    report: Report
    health: Health
    running: bool


def build_metrics(request: ReportRequest) -> Metrics:
    report = build_report(request)
    health = check_health(request)
    conf = get_settings()
    running = running_purge(request.database, conf.running_timeout) is not None
    return Metrics(report=report, health=health, running=running)
