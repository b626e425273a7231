"""The ``TOKENOPS`` settings dict, with its documented defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # How long past its safe expiry a token row is kept (a duration such as "7d").
    "OLDER_THAN": "0d",
    # Fixed rows per purge batch; None sizes batches by time (BATCH_SECONDS).
    "BATCH_SIZE": None,
    # Target length of one purge transaction, in seconds, when BATCH_SIZE is None.
    "BATCH_SECONDS": 0.5,
    # "auto": widen the cutoff by the sliding refresh window when AUTH_TOKEN_CLASSES
    # holds a SlidingToken; True/False force it on or off.
    "SLIDING_TOKENS": "auto",
    # How many users token_report lists by outstanding tokens.
    "REPORT_TOP": 10,
    # Purge history rows older than this are deleted by the next purge; None keeps them all.
    "HISTORY_KEEP": "365d",
    # token_report warns when no purge has succeeded for this long while rows are purgeable.
    "PURGE_WARN_AFTER": "14d",
    # A run still "running" with no sign of life for this long was killed: interrupted.
    "RUNNING_TIMEOUT": "1h",
}


@dataclass(frozen=True)
class TokenopsSettings:
    older_than: str
    batch_size: int | None
    batch_seconds: float
    sliding_tokens: str | bool
    report_top: int
    history_keep: str | None
    purge_warn_after: str
    running_timeout: str


def get_settings() -> TokenopsSettings:
    """Read ``settings.TOKENOPS`` afresh (so ``override_settings`` works)."""
    user: dict[str, Any] = getattr(settings, "TOKENOPS", {}) or {}
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        from django.utils.translation import gettext as _

        from .errors import TokenopsError

        raise TokenopsError(
            _("Unknown TOKENOPS setting(s): %(names)s") % {"names": ", ".join(sorted(unknown))}
        )
    merged = {**DEFAULTS, **user}
    return TokenopsSettings(
        older_than=str(merged["OLDER_THAN"]),
        batch_size=merged["BATCH_SIZE"],
        batch_seconds=float(merged["BATCH_SECONDS"]),
        sliding_tokens=merged["SLIDING_TOKENS"],
        report_top=int(merged["REPORT_TOP"]),
        history_keep=None if merged["HISTORY_KEEP"] is None else str(merged["HISTORY_KEEP"]),
        purge_warn_after=str(merged["PURGE_WARN_AFTER"]),
        running_timeout=str(merged["RUNNING_TIMEOUT"]),
    )


def as_timedelta(value: float | timedelta | None) -> timedelta:
    """LEEWAY may be seconds (int/float) or a timedelta, as in simplejwt's TokenBackend."""
    if value is None:
        return timedelta(0)
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)
