"""The ``TOKENOPS`` settings dict, with its documented defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from .durations import parse_duration
from .errors import TokenopsError, cut, shown

DEFAULTS: dict[str, Any] = {
    # How long past its safe expiry a token row is kept (a duration such as "7d").
    "OLDER_THAN": "0d",
    # Fixed rows per purge batch; None sizes batches by time (BATCH_SECONDS).
    "BATCH_SIZE": None,
    # Target length of one purge transaction, in seconds, when BATCH_SIZE is None;
    # None: 0.5 s, or 0.25 s on MySQL/MariaDB.
    "BATCH_SECONDS": None,
    # SQLite: target of one purge transaction while no other connection writes (batches
    # return to BATCH_SECONDS as soon as one does); None: 1.5 s. Unused elsewhere.
    "BATCH_SECONDS_IDLE": None,
    # "auto": widen the cutoff by the sliding refresh window when AUTH_TOKEN_CLASSES
    # holds a SlidingToken; True/False force it on or off.
    "SLIDING_TOKENS": "auto",
    # How many users token_report lists by outstanding tokens.
    "REPORT_TOP": 10,
    # Purge history rows older than this are deleted by the next purge; None keeps them all.
    "HISTORY_KEEP": "365d",
    # A purge is overdue (token_report warns, --check exits 4) when none has succeeded for
    # this long while rows are purgeable; never purged: once a purgeable token expired
    # this long ago.
    "PURGE_WARN_AFTER": "14d",
    # A run still "running" with no sign of life for this long was killed: interrupted.
    "RUNNING_TIMEOUT": "1h",
    # Time budget of a purge, in seconds: it stops after the batch during which the
    # budget ran out (the next run continues); None: no budget.
    "MAX_SECONDS": None,
    # How the admin's "Purge now" runs the purge outside the request: "celery" sends the
    # Celery task, "thread" runs it in a thread of the web process, "auto" is "celery" when
    # Celery is installed and CELERY_BROKER_URL is set, else "thread".
    "ADMIN_PURGE": "auto",
    # In-app sweeps: the chance (0.0-1.0) that issuing a token also deletes a few purgeable
    # rows after its transaction commits; 0 turns sweeping off.
    "SWEEP_PROBABILITY": 0,
    # Rows one sweep deletes at most (and the oldest ids it looks at). 100: a sweep that
    # deletes a full 100 rows keeps its worker 9-17 ms (median) longer, 500 rows 20-41 ms
    # (1,000,000 tokens, docs/benchmark.md); 0.1 x 100 = 10 rows per issued token still
    # outpaces the one it adds tenfold.
    "SWEEP_MAX_ROWS": 100,
    # A sweep triggered while a request is served runs once its response has gone out (at
    # the request's end, in the same thread); False: at once, after the token's commit.
    "SWEEP_AFTER_RESPONSE": True,
}

ADMIN_PURGE_CHOICES = ("auto", "celery", "thread")


# The one bound of every row count a user gives (--batch-size, --top, BATCH_SIZE,
# REPORT_TOP, the Celery task's batch_size): far above any useful batch, and far below
# the 32-bit integer columns of the purge history.
MAX_ROWS = 10_000_000
# A sweep runs inside a login or a refresh: its window stays small.
MAX_SWEEP_ROWS = 10_000
# Unknown keys named in one error line at most; the rest are counted.
SHOWN_KEYS = 5


@dataclass(frozen=True)
class TokenopsSettings:
    """The validated settings: durations as timedeltas, numbers checked."""

    older_than: timedelta
    older_than_text: str  # as written, for the schedules token_schedule_hint prints
    batch_size: int | None
    batch_seconds: float | None
    sliding_tokens: str | bool
    report_top: int
    history_keep: timedelta | None
    purge_warn_after: timedelta
    running_timeout: timedelta
    # SQLite's purge target while no other connection writes; None: the engine's default.
    batch_seconds_idle: float | None = None
    max_seconds: float | None = None
    admin_purge: str = "auto"
    # In-app sweeps on token issuance (0.0: off) and the rows one sweep deletes at most.
    sweep_probability: float = 0.0
    sweep_max_rows: int = 100
    sweep_after_response: bool = True


def _invalid(key: str, expected: str, value: Any) -> TokenopsError:
    return TokenopsError(
        _("TOKENOPS['%(key)s'] must be %(expected)s, got %(value)s.")
        % {"key": key, "expected": expected, "value": shown(value)}
    )


def _duration(key: str, value: Any) -> timedelta:
    if not isinstance(value, str):
        raise _invalid(key, _("a duration string such as '7d'"), value)
    try:
        return parse_duration(value)
    except TokenopsError as exc:
        raise TokenopsError(f"TOKENOPS['{key}']: {exc}") from exc


def is_row_count(value: Any, low: int) -> bool:
    """A whole number of rows from ``low`` to MAX_ROWS (not a bool), wherever it comes from."""
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= MAX_ROWS


def _whole(key: str, value: Any, low: int) -> int:
    if not is_row_count(value, low):
        raise _invalid(
            key,
            _("a whole number from %(low)s to %(high)s") % {"low": low, "high": MAX_ROWS},
            value,
        )
    return value


def is_budget(value: Any) -> bool:
    """A time budget in seconds: a real number above 0 (not a bool, not NaN or infinity).

    An int too large for a float (10**400) is refused here, not by float() later.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        seconds = float(value)
    except OverflowError:
        return False
    return 0 < seconds < float("inf")


def is_probability(value: Any) -> bool:
    """A real number from 0 to 1 (not a bool, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value <= 1


def _user_settings() -> Mapping[Any, Any]:
    """``settings.TOKENOPS``, which must be a dict: a list or a string would be read as keys."""
    user = getattr(settings, "TOKENOPS", None)
    if user is None:
        return {}
    if not isinstance(user, Mapping):
        raise TokenopsError(
            _("TOKENOPS must be a dict of settings such as {'OLDER_THAN': '7d'}, got %(value)s.")
            % {"value": shown(user)}
        )
    return user


def get_settings() -> TokenopsSettings:
    """Read and check ``settings.TOKENOPS`` afresh (so ``override_settings`` works).

    Every problem is one TokenopsError naming the key, before anything is written.
    """
    user = _user_settings()
    unknown = sorted(str(name) for name in user if name not in DEFAULTS)
    if unknown:
        more = len(unknown) - SHOWN_KEYS
        listed = ", ".join(cut(name) for name in unknown[:SHOWN_KEYS])
        listed += f" (+{more})" if more > 0 else ""
        raise TokenopsError(_("Unknown TOKENOPS setting(s): %(names)s") % {"names": listed})
    merged = {**DEFAULTS, **user}
    seconds = merged["BATCH_SECONDS"]
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 60
    ):
        raise _invalid("BATCH_SECONDS", _("a number of seconds above 0 and at most 60"), seconds)
    idle = merged["BATCH_SECONDS_IDLE"]
    if idle is not None and (
        isinstance(idle, bool) or not isinstance(idle, int | float) or not 0 < idle <= 60
    ):
        raise _invalid("BATCH_SECONDS_IDLE", _("a number of seconds above 0 and at most 60"), idle)
    sliding = merged["SLIDING_TOKENS"]
    if not (sliding == "auto" or isinstance(sliding, bool)):
        raise _invalid("SLIDING_TOKENS", _('"auto", True or False'), sliding)
    batch_size = merged["BATCH_SIZE"]
    keep = merged["HISTORY_KEEP"]
    budget = merged["MAX_SECONDS"]
    if budget is not None and not is_budget(budget):
        raise _invalid("MAX_SECONDS", _("None or a number of seconds above 0"), budget)
    admin_purge = merged["ADMIN_PURGE"]
    if admin_purge not in ADMIN_PURGE_CHOICES:
        raise _invalid("ADMIN_PURGE", _('"auto", "celery" or "thread"'), admin_purge)
    probability = merged["SWEEP_PROBABILITY"]
    if not is_probability(probability):
        raise _invalid("SWEEP_PROBABILITY", _("a number from 0.0 to 1.0"), probability)
    sweep_rows = merged["SWEEP_MAX_ROWS"]
    if isinstance(sweep_rows, bool) or not isinstance(sweep_rows, int):
        sweep_rows = None
    if sweep_rows is None or not 1 <= sweep_rows <= MAX_SWEEP_ROWS:
        raise _invalid(
            "SWEEP_MAX_ROWS",
            _("a whole number from %(low)s to %(high)s") % {"low": 1, "high": MAX_SWEEP_ROWS},
            merged["SWEEP_MAX_ROWS"],
        )
    after_response = merged["SWEEP_AFTER_RESPONSE"]
    if not isinstance(after_response, bool):
        raise _invalid("SWEEP_AFTER_RESPONSE", _("True or False"), after_response)
    return TokenopsSettings(
        older_than=_duration("OLDER_THAN", merged["OLDER_THAN"]),
        older_than_text=merged["OLDER_THAN"].strip().lower(),
        batch_size=None if batch_size is None else _whole("BATCH_SIZE", batch_size, 1),
        batch_seconds=None if seconds is None else float(seconds),
        batch_seconds_idle=None if idle is None else float(idle),
        sliding_tokens=sliding,
        report_top=_whole("REPORT_TOP", merged["REPORT_TOP"], 0),
        history_keep=None if keep is None else _duration("HISTORY_KEEP", keep),
        purge_warn_after=_duration("PURGE_WARN_AFTER", merged["PURGE_WARN_AFTER"]),
        running_timeout=_duration("RUNNING_TIMEOUT", merged["RUNNING_TIMEOUT"]),
        max_seconds=None if budget is None else float(budget),
        admin_purge=admin_purge,
        sweep_probability=float(probability),
        sweep_max_rows=sweep_rows,
        sweep_after_response=after_response,
    )
