"""In-app sweeps: issuing a token sometimes deletes a few purgeable rows, so nothing needs
scheduling (PHP's ``session.gc_probability``, for simplejwt's token tables).

With ``TOKENOPS["SWEEP_PROBABILITY"]`` above 0, each new OutstandingToken (login, refresh
with rotation, any code path) registers, with that probability, one sweep to run after
its transaction commits, in the same thread. Inside a request (between Django's
``request_started`` and ``request_finished``, in that thread) the sweep waits for the
request's end: ``request_finished`` comes when the server closes the response, after its
bytes have gone out, so the client does not wait for the sweep (SWEEP_AFTER_RESPONSE;
one sweep per database and request). Outside a request (a shell, a Celery task) it runs
as soon as the token's transaction commits. A sweep:

- steps aside while a full purge holds the purge lock of its database (``purge_running``);
- takes the safe cutoff of ``token_purge`` (``safe_cutoff`` with TOKENOPS' OLDER_THAN and
  SLIDING_TOKENS): it never deletes a row a setting can still accept;
- looks only at a window of at most SWEEP_MAX_ROWS ids (the N-th id above its start, found
  by walking the primary key), so its cost does not grow with the table: simplejwt's
  ``expires_at`` has no index, and "find purgeable rows" anywhere would read the whole
  table when few are purgeable. Ids follow creation time and the oldest rows expire
  first, so the window starts at the oldest id. Rows that outlive younger ones (a token
  type with a longer lifetime) can fill that window; a window that finds nothing moves
  the next sweep's window up (a per-process cursor), and each sweep still looks at the
  oldest window too, so such rows cost capacity, never the sweep's bound;
- deletes the window's purgeable rows, blacklist rows first, in one short transaction.
  PostgreSQL, MySQL 8 and MariaDB 10.6+ take them with ``SELECT ... FOR UPDATE SKIP
  LOCKED`` and delete by that id list: rows another sweep or a purge has locked are left,
  never waited for. SQLite has one write lock: the sweep waits for it SQLITE_BUSY_MS at
  most (a temporary ``PRAGMA busy_timeout``) and otherwise skips;
- adds what it deleted to the hour's SweepTally row (no history row per sweep).

A sweep never fails the request that triggered it: ``sweep_quietly`` logs an error on the
"tokenops" logger once per ERROR_INTERVAL (per database) and swallows it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)
from django.db.models import F, Max, Q, Sum
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from .app_settings import TokenopsSettings, get_settings
from .cutoff import FROM_SETTING, Cutoff, safe_cutoff
from .errors import first_line
from .locking import purge_running
from .models import SweepTally
from .purging import Deleted, is_deadlock

logger = logging.getLogger("tokenops")

DISPATCH_UID = "tokenops.sweep_on_token_issued"
# At most one logged sweep error per database in this many seconds.
ERROR_INTERVAL = 300.0
# SQLite: how long a sweep waits for the write lock before it skips (milliseconds).
SQLITE_BUSY_MS = 5
# MySQL/MariaDB: the bound of any row-lock wait in a sweep's transaction, in seconds
# (innodb_lock_wait_timeout's minimum): none is expected (see _listed), and a sweep
# that meets one anyway rolls back and skips.
MYSQL_LOCK_WAIT_SECONDS = 1
# Hourly tally rows kept; older ones are folded into the row of hour 0.
TALLY_KEEP_HOURS = 90 * 24
FOLDED_HOUR = 0
# Why a sweep did nothing (SweepResult.skipped).
SKIPPED_PURGE = "purge running"
SKIPPED_BUSY = "database busy"


@dataclass(frozen=True)
class SweepResult:
    deleted: Deleted = field(default_factory=Deleted)
    skipped: str = ""


@dataclass(frozen=True)
class SweepTotals:
    outstanding: int = 0
    blacklisted: int = 0
    # Sweeps that deleted at least one row.
    sweeps: int = 0


@dataclass(frozen=True)
class SweepStatus:
    """What the report, the metrics and --check say about sweeping on one database."""

    probability: float
    max_rows: int
    last_24h: SweepTotals | None
    total: SweepTotals | None
    # When a sweep last deleted rows (an hour's start), if the tally says.
    last_swept: datetime | None
    # The tally could not be read (not migrated, database error): its first line.
    error: str = ""

    @property
    def enabled(self) -> bool:
        return self.probability > 0


class ErrorGate:
    """Lets one error line per database through every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.lock = threading.Lock()
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def report(self, using: str, exc: BaseException) -> None:
        now = time.monotonic()
        with self.lock:
            last = self.last.get(using)
            if last is not None and now - last < self.interval:
                self.suppressed[using] = self.suppressed.get(using, 0) + 1
                return
            self.last[using] = now
            more = self.suppressed.pop(using, 0)
        logger.warning(
            "in-app token sweep on %r failed: %s%s",
            using,
            first_line(exc),
            f" ({more} more failures not logged)" if more else "",
        )

    def reset(self) -> None:
        with self.lock:
            self.last.clear()
            self.suppressed.clear()


ERRORS = ErrorGate(ERROR_INTERVAL)
# Per database alias: where the next sweep's window starts (see the module docstring).
_cursors: dict[str, int] = {}


class _RequestSweeps(threading.local):
    """This thread's request, if one is being served: the sweeps waiting for its end."""

    pending: dict[str, TokenopsSettings] | None = None


_request = _RequestSweeps()


def reset_state() -> None:
    """Forget the error gate, the window cursors and this thread's request (a clean start)."""
    ERRORS.reset()
    _cursors.clear()
    _request.pending = None


def _probability_asked() -> bool:
    """The cheap first look, on every saved token: is SWEEP_PROBABILITY set and not 0?"""
    user = getattr(settings, "TOKENOPS", None)
    return isinstance(user, Mapping) and bool(user.get("SWEEP_PROBABILITY"))


def on_token_saved(
    sender: Any, instance: Any, created: bool = False, using: str = "default", **kwargs: Any
) -> None:
    """post_save of OutstandingToken: maybe register a sweep for after the commit.

    TOKENOPS is read on each call (override_settings works); a bad value is logged like a
    failed sweep and the token is saved all the same.
    """
    if not created or kwargs.get("raw") or not _probability_asked():
        return
    try:
        conf = get_settings()
    except Exception as exc:
        ERRORS.report(using, exc)
        return
    if random.random() >= conf.sweep_probability:  # noqa: S311 - sampling, not security
        return
    transaction.on_commit(partial(_sweep_after_commit, using, conf), using=using)


def _sweep_after_commit(using: str, conf: TokenopsSettings) -> None:
    """The token is committed: sweep now, or at the end of this thread's request.

    Django's WSGI and ASGI handlers send ``request_started``, run a sync view and close
    the response in one thread (ASGI: the request's thread-sensitive executor), so a
    thread-local finds the request's sweeps again.
    """
    if conf.sweep_after_response and _request.pending is not None:
        _request.pending.setdefault(using, conf)
        return
    sweep_quietly(using, conf)


def on_request_started(**kwargs: Any) -> None:
    """A request begins in this thread: its sweeps wait for its end.

    Sweeps still pending (a request whose end never came) wait for this one's end: none
    is dropped.
    """
    if _request.pending is None:
        _request.pending = {}


def on_request_finished(**kwargs: Any) -> None:
    """The response is out: run the request's sweeps, one per database.

    ``connect`` puts this receiver before Django's ``close_old_connections``, so a sweep
    uses the request's connection; should that one be closed already, a connection the
    sweep opens is closed after it, as the request left it.
    """
    pending, _request.pending = _request.pending, None
    for using, conf in (pending or {}).items():
        was_closed = connections[using].connection is None
        sweep_quietly(using, conf)
        if was_closed:
            with suppress(Exception):
                connections[using].close()


def sweep_quietly(using: str, conf: TokenopsSettings | None = None) -> SweepResult | None:
    """``sweep``, with any error logged (rate-limited) and swallowed: the request goes on."""
    try:
        return sweep(using, conf=conf)
    except Exception as exc:
        ERRORS.report(using, exc)
        with suppress(Exception):
            if connections[using].in_atomic_block:
                return None
            # A broken connection must not fail the rest of the request.
            connections[using].close_if_unusable_or_obsolete()
        return None


def sweep(
    using: str = "default", *, conf: TokenopsSettings | None = None, now: datetime | None = None
) -> SweepResult:
    """Delete at most SWEEP_MAX_ROWS purgeable rows of ``using`` in one transaction.

    ``now`` (aware) stands for the clock: the simulation in scripts/bench_sweep.py moves it.
    """
    conf = conf or get_settings()
    now = now or datetime.now(UTC)
    if purge_running(using):
        return SweepResult(skipped=SKIPPED_PURGE)
    cutoff = safe_cutoff(
        conf.older_than,
        older_than_source=FROM_SETTING,
        sliding_tokens=conf.sliding_tokens,
        now=now,
    )
    limit = conf.sweep_max_rows
    start = _cursors.get(using, 0)
    try:
        deleted, upper = _sweep_window(using, cutoff, limit, start, now)
        if deleted.outstanding == 0 and start > 0:
            # The bottom first: rows expire there first, and a cursor may be stale.
            deleted, _upper = _sweep_window(using, cutoff, limit, 0, now)
            if deleted.outstanding:
                upper = None
                start = 0
    except OperationalError as exc:
        sqlite_busy = connections[using].vendor == "sqlite" and "locked" in str(exc)
        if sqlite_busy or is_deadlock(exc):
            logger.debug("in-app token sweep on %r skipped: %s", using, first_line(exc))
            return SweepResult(skipped=SKIPPED_BUSY)
        raise
    if deleted.outstanding:
        _cursors[using] = start
    else:
        # Nothing purgeable in this window: the next sweep looks further up (or wraps).
        _cursors[using] = upper or 0
    return SweepResult(deleted=deleted)


def _window_upper(using: str, after: int, limit: int) -> int | None:
    """The ``limit``-th id above ``after`` (a walk of the primary key); None: fewer rows."""
    ids = (
        OutstandingToken.objects.using(using)
        .filter(pk__gt=after)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    found = list(ids[limit - 1 : limit])
    return found[0] if found else None


def _sweep_window(
    using: str, cutoff: Cutoff, limit: int, after: int, now: datetime
) -> tuple[Deleted, int | None]:
    """Delete the purgeable rows among the ``limit`` ids above ``after``; (deleted, upper)."""
    upper = _window_upper(using, after, limit)
    window = {"pk__gt": after} if upper is None else {"pk__gt": after, "pk__lte": upper}
    candidates = OutstandingToken.objects.using(using).filter(
        expires_at__lte=cutoff.db_value(), **window
    )
    connection = connections[using]
    if connection.vendor == "sqlite":
        with _sqlite_busy_timeout(using, SQLITE_BUSY_MS), transaction.atomic(using=using):
            deleted = _delete_range(using, candidates, after, upper)
            if deleted.outstanding:
                # In the same transaction: a second one would have to win the lock again.
                try:
                    with transaction.atomic(using=using):
                        _tally(using, deleted, now)
                except DatabaseError as exc:
                    ERRORS.report(using, exc)
        return deleted, upper
    with _mysql_lock_wait(using, MYSQL_LOCK_WAIT_SECONDS), transaction.atomic(using=using):
        if connection.features.has_select_for_update_skip_locked:
            deleted = _delete_locked(using, candidates, limit)
        else:  # MariaDB < 10.6 has no SKIP LOCKED: a range delete, which may wait
            deleted = _delete_range(using, candidates, after, upper)
    if deleted.outstanding:
        # Its own tiny transaction: the hour's row is shared by every sweep, and its lock
        # must not be held while tokens are deleted.
        with transaction.atomic(using=using):
            _tally(using, deleted, now)
    return deleted, upper


def _delete_range(using: str, candidates: Any, after: int, upper: int | None) -> Deleted:
    """The window's purgeable rows by range, blacklist rows first (no row locks: SQLite)."""
    token_range = {"token_id__gt": after}
    if upper is not None:
        token_range["token_id__lte"] = upper
    blacklisted = (
        BlacklistedToken.objects.using(using)
        .filter(token__in=candidates.values("pk"), **token_range)
        ._raw_delete(using)
    )
    outstanding = candidates._raw_delete(using)
    return Deleted(outstanding=outstanding, blacklisted=blacklisted)


def _delete_locked(using: str, candidates: Any, limit: int) -> Deleted:
    """The window's purgeable rows that nobody else has locked, deleted by id list.

    A token whose blacklist row someone else holds (a purge deleting it now) stays for
    them: the sweep never waits on a lock, so it can neither block nor deadlock. Every
    statement after the first finds its rows through ``_listed``.
    """
    ids = list(
        candidates.order_by("pk")
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return Deleted()
    connection = connections[using]
    pk_column = connection.ops.quote_name(BlacklistedToken._meta.pk.column)
    token_column = connection.ops.quote_name(BlacklistedToken._meta.get_field("token").column)
    rows, params = _listed(connection, BlacklistedToken, "token", ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.{pk_column}, t.{token_column} {rows} FOR UPDATE SKIP LOCKED", params
        )
        locked = dict(cursor.fetchall())
        cursor.execute(f"SELECT t.{token_column} {rows}", params)
        listed = {token_id for (token_id,) in cursor.fetchall()}
    held_elsewhere = listed - set(locked.values())
    if held_elsewhere:
        ids = [pk for pk in ids if pk not in held_elsewhere]
    blacklisted = _delete_ids(using, BlacklistedToken, list(locked)) if locked else 0
    outstanding = _delete_ids(using, OutstandingToken, ids) if ids else 0
    return Deleted(outstanding=outstanding, blacklisted=blacklisted)


def _delete_ids(using: str, model: Any, pks: list[int]) -> int:
    """Delete rows by primary key, touching no other row (``_listed``)."""
    connection = connections[using]
    rows, params = _listed(connection, model, model._meta.pk.name, pks)
    target = "t " if connection.vendor == "mysql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE {target}{rows}", params)
        return cursor.rowcount


def _listed(connection: Any, model: Any, field: str, values: list[int]) -> tuple[str, list[Any]]:
    """``FROM ... [WHERE]`` of ``model``'s rows (alias ``t``) whose ``field`` is in ``values``.

    Each row is one lookup of the field's unique index, and no other row is read or
    locked. MySQL/MariaDB join from the list (STRAIGHT_JOIN reads it first): their
    ``IN (...)`` may be planned as a scan (a small table, stale statistics), and a scan
    locks each row it passes, under READ COMMITTED too for that moment, so concurrent
    sweeps would skip each other's rows, and a DELETE would wait on them. PostgreSQL
    takes the list as one array: 500 literals took longer to plan (1.7 ms) than to run.
    Names come quoted from the model's metadata; the values are parameters.
    """
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    column = quote(model._meta.get_field(field).column)
    if connection.vendor == "mysql":
        selects = " UNION ALL ".join(["SELECT %s AS id"] * len(values))
        return f"FROM ({selects}) AS v STRAIGHT_JOIN {table} AS t ON t.{column} = v.id", values
    if connection.vendor == "postgresql":
        return f"FROM {table} AS t WHERE t.{column} = ANY(%s)", [values]
    marks = ", ".join(["%s"] * len(values))
    return f"FROM {table} AS t WHERE t.{column} IN ({marks})", values


@contextmanager
def _mysql_lock_wait(using: str, seconds: int) -> Iterator[None]:
    """MySQL/MariaDB: row-lock waits end after ``seconds`` for the block (then skipped)."""
    connection = connections[using]
    if connection.vendor != "mysql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
        previous = int(cursor.fetchone()[0])
        cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", [int(seconds)])
    try:
        yield
    finally:
        if connection.connection is not None:
            with suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", [previous])


@contextmanager
def _sqlite_busy_timeout(using: str, milliseconds: int) -> Iterator[None]:
    """This connection waits ``milliseconds`` at most for SQLite's lock, then its own again."""
    with connections[using].cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        previous = int(cursor.fetchone()[0])
        cursor.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
    try:
        yield
    finally:
        if connections[using].connection is not None:
            with suppress(DatabaseError), connections[using].cursor() as cursor:
                cursor.execute(f"PRAGMA busy_timeout = {previous}")


def hour_of(moment: datetime) -> int:
    """Hours since the Unix epoch: the tally's bucket of ``moment`` (aware)."""
    return int(moment.timestamp() // 3600)


def _tally(using: str, deleted: Deleted, now: datetime) -> None:
    """Add one sweep's rows to its hour's row (F() increments: no lost update)."""
    hour = hour_of(now)
    rows = SweepTally.objects.using(using)
    increments = {
        "outstanding_deleted": F("outstanding_deleted") + deleted.outstanding,
        "blacklisted_deleted": F("blacklisted_deleted") + deleted.blacklisted,
        "sweeps": F("sweeps") + 1,
    }
    if rows.filter(hour=hour).update(**increments):
        return
    try:
        with transaction.atomic(using=using):
            rows.create(
                hour=hour,
                outstanding_deleted=deleted.outstanding,
                blacklisted_deleted=deleted.blacklisted,
                sweeps=1,
            )
    except IntegrityError:  # another sweep created the hour's row first
        rows.filter(hour=hour).update(**increments)
        return
    _fold(using, hour - TALLY_KEEP_HOURS)


def _fold(using: str, before: int) -> None:
    """Fold the rows of hours before ``before`` into hour 0's row: the sums stay the same."""
    rows = SweepTally.objects.using(using)
    old = rows.filter(hour__gt=FOLDED_HOUR, hour__lt=before)
    sums = old.aggregate(
        o=Sum("outstanding_deleted"), b=Sum("blacklisted_deleted"), s=Sum("sweeps"), n=Max("hour")
    )
    if sums["n"] is None:
        return
    old = rows.filter(hour__gt=FOLDED_HOUR, hour__lte=sums["n"])
    folded, _created = rows.get_or_create(hour=FOLDED_HOUR)
    rows.filter(pk=folded.pk).update(
        outstanding_deleted=F("outstanding_deleted") + sums["o"],
        blacklisted_deleted=F("blacklisted_deleted") + sums["b"],
        sweeps=F("sweeps") + sums["s"],
    )
    old.delete()


def _sums(prefix: str = "", only: Q | None = None) -> dict[str, Sum]:
    """The tally's three sums (of the rows ``only`` keeps), named with ``prefix``."""
    return {
        f"{prefix}o": Sum("outstanding_deleted", filter=only),
        f"{prefix}b": Sum("blacklisted_deleted", filter=only),
        f"{prefix}s": Sum("sweeps", filter=only),
    }


def _totals(sums: dict[str, Any], prefix: str = "") -> SweepTotals:
    """``_sums`` as read back (None: no row)."""
    return SweepTotals(*(sums[f"{prefix}{key}"] or 0 for key in "obs"))


def sweep_totals(
    using: str, *, hours: int | None = None, now: datetime | None = None
) -> SweepTotals:
    """What sweeps deleted: in the last ``hours`` hour buckets (this one included), or ever."""
    rows = SweepTally.objects.using(using)
    if hours is not None:
        rows = rows.filter(hour__gt=hour_of(now or datetime.now(UTC)) - hours)
    return _totals(rows.aggregate(**_sums()))


def sweep_status(using: str, conf: TokenopsSettings, now: datetime) -> SweepStatus:
    """Sweeping's settings and, while it is on, what the tally says (one query).

    An unreadable tally is an answer (``error``), not a failure of the report.
    """
    if not conf.sweep_probability:
        return SweepStatus(conf.sweep_probability, conf.sweep_max_rows, None, None, None)
    day = Q(hour__gt=hour_of(now) - 24)
    try:
        with transaction.atomic(using=using):
            sums = SweepTally.objects.using(using).aggregate(
                **_sums(),
                **_sums("day_", day),
                last=Max("hour", filter=Q(hour__gt=FOLDED_HOUR)),
            )
    except Exception as exc:
        return SweepStatus(
            conf.sweep_probability, conf.sweep_max_rows, None, None, None, first_line(exc)
        )
    last = sums["last"]
    last_swept = None if last is None else datetime.fromtimestamp(last * 3600, UTC)
    return SweepStatus(
        conf.sweep_probability,
        conf.sweep_max_rows,
        _totals(sums, "day_"),
        _totals(sums),
        last_swept,
    )


def swept_within(status: SweepStatus, now: datetime, within: timedelta) -> bool:
    """Sweeping is on and a sweep deleted rows in the last ``within`` (hour precision)."""
    return (
        status.enabled
        and status.last_swept is not None
        and now - status.last_swept <= within + timedelta(hours=1)
    )


def connect() -> None:
    """Listen for new OutstandingTokens and for requests (once, from the app's ready())."""
    from django.core.signals import request_finished, request_started
    from django.db.models.signals import post_save

    post_save.connect(
        on_token_saved, sender=OutstandingToken, dispatch_uid=DISPATCH_UID, weak=False
    )
    request_started.connect(on_request_started, dispatch_uid=f"{DISPATCH_UID}.started")
    # Before Django's close_old_connections (connected when django.db was imported): with
    # CONN_MAX_AGE 0 it closes the request's connection, which the sweep would reopen. A
    # project that turned it off keeps it off.
    closes = request_finished.disconnect(close_old_connections)
    request_finished.connect(on_request_finished, dispatch_uid=f"{DISPATCH_UID}.finished")
    if closes:
        request_finished.connect(close_old_connections)
