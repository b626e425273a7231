"""The purge as a Celery task: the same ``run_purge`` as ``token_purge``, failures Celery sees.

Its arguments default like the command's options: ``older_than`` to TOKENOPS["OLDER_THAN"],
``batch_size`` to TOKENOPS["BATCH_SIZE"].

The usual recipe (a task calling ``flushexpiredtokens`` inside ``try/except`` that only
logs) makes Celery record success while nothing was purged. Here bad input and missing
tables fail the task at once; a transient database error (a locked SQLite file, a
dropped connection, a deadlock) is retried with exponential backoff a bounded number of
times and then fails the task too.

Retry policy lives in task attributes, so a project changes it the standard Celery way::

    CELERY_TASK_ANNOTATIONS = {
        "tokenops.tasks.purge_expired_tokens": {"max_retries": 3, "retry_backoff": 10},
    }

Celery is an optional extra: only importing this module needs it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

try:
    from billiard.pool import SIG_SOFT_TIMEOUT, soft_timeout_sighandler
    from celery import shared_task
    from celery.exceptions import SoftTimeLimitExceeded
    from celery.utils.time import get_exponential_backoff_interval
except ImportError as exc:
    raise ImportError("tokenops.tasks needs Celery: pip install 'tokenops[celery]'.") from exc

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from .app_settings import MAX_ROWS, is_budget, is_row_count
from .durations import parse_duration
from .errors import PurgeSkipped, TokenopsError, first_line, shown
from .models import PurgeRun
from .operations import PurgeRequest, run_purge
from .purging import is_out_of_space
from .rendering import purge_dict
from .scheduling.schedule import CELERY_TASK

logger = logging.getLogger("tokenops")

TRANSIENT = (OperationalError, InterfaceError)


def is_transient(exc: BaseException) -> bool:
    """A database error that may pass by itself: a lock, a dropped connection, a deadlock.

    ``ensure_ready`` reports an unreachable database as TokenopsError; its cause tells
    whether the database was merely unreachable for now. A full disk is an
    OperationalError too, but it waits for a person, not for time.
    """
    cause = exc.__cause__ if isinstance(exc, TokenopsError) else exc
    return isinstance(cause, TRANSIENT) and not is_out_of_space(cause)


def validate_arguments(
    older_than: Any, batch_size: Any, database: Any, dry_run: Any, max_seconds: Any = None
) -> PurgeRequest:
    """Arguments arrive as JSON, often typed into the admin: check types, not just values.

    A ``"false"`` string taken as truthy would turn a purge into a silent dry run. The
    bounds are the command's (MAX_ROWS): a larger batch_size would not even fit the
    history's integer column on PostgreSQL, and the run's row would be lost.
    """
    if older_than is not None and not isinstance(older_than, str):
        raise TokenopsError(
            f"older_than must be a duration string such as '7d', got {shown(older_than)}."
        )
    if batch_size is not None and not is_row_count(batch_size, 1):
        raise TokenopsError(
            f"batch_size must be a whole number from 1 to {MAX_ROWS}, got {shown(batch_size)}."
        )
    if not isinstance(database, str):
        raise TokenopsError(f"database must be a database alias, got {shown(database)}.")
    if not isinstance(dry_run, bool):
        raise TokenopsError(f"dry_run must be true or false, got {shown(dry_run)}.")
    if max_seconds is not None and not is_budget(max_seconds):
        raise TokenopsError(
            f"max_seconds must be a number of seconds above 0, got {shown(max_seconds)}."
        )
    return PurgeRequest(
        database,
        older_than=None if older_than is None else parse_duration(older_than),
        batch_size=batch_size,
        dry_run=dry_run,
        trigger=PurgeRun.Trigger.TASK,
        max_seconds=None if max_seconds is None else float(max_seconds),
    )


def confirmed_cutoff(value: Any) -> datetime | None:
    """The ``cutoff_at`` argument as an aware datetime; a naive or unreadable one is refused."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise TokenopsError(
            f"cutoff_at must be an ISO 8601 moment with a zone, got {str(value)[:40]!r}."
        )
    return moment.astimezone(UTC)


@contextlib.contextmanager
def soft_time_limit_as_flag() -> Iterator[Callable[[], bool]]:
    """Celery's soft time limit, for the purge's duration, as a flag instead of an exception.

    A prefork worker's child raises SoftTimeLimitExceeded from its SIGUSR1 handler, at any
    bytecode: inside a COMMIT, between a MySQL query and its answer, or inside the history
    write (which must not fail). Seen on MariaDB: the connection's transaction state left
    behind the server's, so the run's own history row could not be written. While
    billiard's handler is the one installed, ours only sets a flag the engine reads after
    each batch; the purge then ends in order, and billiard's handler comes back after it.
    """
    reached = threading.Event()
    if (
        SIG_SOFT_TIMEOUT is None  # Windows: no soft time limits at all
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(SIG_SOFT_TIMEOUT) is not soft_timeout_sighandler
    ):
        yield reached.is_set
        return

    def flag(signum: int, frame: object) -> None:
        reached.set()

    signal.signal(SIG_SOFT_TIMEOUT, flag)
    try:
        yield reached.is_set
    finally:
        signal.signal(SIG_SOFT_TIMEOUT, soft_timeout_sighandler)


@shared_task(
    bind=True,
    name=CELERY_TASK,
    # Read by the retry code below (Celery only applies them itself with autoretry_for).
    max_retries=5,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
)
def purge_expired_tokens(
    self: Any,
    older_than: str | None = None,
    batch_size: int | None = None,
    database: str = "default",
    dry_run: bool = False,
    max_seconds: float | None = None,
    cutoff_at: str | None = None,
    started_by: str = "",
) -> dict[str, Any]:
    """Purge what ``token_purge`` would and return its ``--format json`` dict.

    ``cutoff_at`` (ISO 8601 with a zone) and ``started_by`` come from the admin's "Purge
    now": the cutoff its user confirmed (used unless the safe cutoff is earlier) and who.

    Another purge holding the lock is no failure: the task succeeds at once (no retry)
    with ``{"skipped": true, ...}``. A soft time limit ends the purge like ``max_seconds``.
    """
    request = validate_arguments(older_than, batch_size, database, dry_run, max_seconds)
    request = replace(
        request, cutoff_at=confirmed_cutoff(cutoff_at), started_by=str(started_by)[:150]
    )
    try:
        with soft_time_limit_as_flag() as soft_limit_reached:
            result = run_purge(
                request, stop_requested=soft_limit_reached, stop_on=(SoftTimeLimitExceeded,)
            )
        if soft_limit_reached():
            logger.warning("token purge task on %r reached its soft time limit", database)
    except PurgeSkipped as exc:
        logger.warning("token purge task on %r skipped: %s", database, exc)
        return {"skipped": True, "database": database, "message": str(exc)}
    except (TokenopsError, DatabaseError) as exc:
        retries = self.request.retries
        if not is_transient(exc):
            logger.error("token purge task failed on %r: %s", database, first_line(exc))
            raise
        if self.max_retries is not None and retries >= self.max_retries:
            logger.error(
                "token purge task failed on %r after %d retries: %s",
                database,
                retries,
                first_line(exc),
            )
            raise
        countdown = get_exponential_backoff_interval(
            factor=self.retry_backoff,
            retries=retries,
            maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter,
        )
        logger.warning(
            "token purge task on %r hit a transient database error (%s); retry %d of %s in %d s",
            database,
            first_line(exc),
            retries + 1,
            self.max_retries,
            countdown,
        )
        # A dropped connection stays broken until closed; the retry opens a new one.
        with contextlib.suppress(DatabaseError):
            connections[database].close()
        raise self.retry(exc=exc, countdown=countdown) from exc
    return {"skipped": False, **purge_dict(result)}
