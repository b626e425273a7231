"""The safe cutoff: the newest ``expires_at`` that no setting of the project can still accept.

simplejwt rejects a token only when ``exp <= now - LEEWAY``, and a refreshed sliding
token keeps its ``jti`` (so its blacklist row) while its real expiry moves forward; the
row keeps the first expiry. A row is purgeable when ``expires_at <= cutoff``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.tokens import SlidingToken

# What set the margin (``Cutoff.reason``, JSON's "cutoff_reason", PurgeRun.cutoff_reason).
OLDER_THAN = "older-than"
LEEWAY = "LEEWAY"
SLIDING = "sliding window"

# Where ``older_than`` came from (``Cutoff.older_than_source``, JSON's "older_than_source"):
# the starter gave it (``--older-than``, the Celery task's ``older_than``), or it is
# TOKENOPS["OLDER_THAN"] because the starter left it out.
FROM_OPTION = "option"
FROM_SETTING = "setting"


def jwt_settings() -> Any:
    """simplejwt's settings as they are now.

    simplejwt rebinds ``api_settings`` when ``SIMPLE_JWT`` changes (``override_settings``
    in a project's tests); a reference imported once would keep the old LEEWAY.
    """
    return simplejwt_settings.api_settings


@dataclass(frozen=True)
class Cutoff:
    """When the cutoff was taken, the margin behind it, and which setting set the margin.

    ``older_than_source`` says whether ``older_than`` was asked for (FROM_OPTION) or is
    TOKENOPS["OLDER_THAN"] (FROM_SETTING); the orchestrator knows which.
    """

    now: datetime
    older_than: timedelta
    older_than_source: str
    leeway: timedelta
    sliding_window: timedelta | None
    margin: timedelta
    reason: str

    @property
    def moment(self) -> datetime:
        """The cutoff as an aware UTC datetime."""
        return self.now - self.margin

    def db_value(self, moment: datetime | None = None) -> datetime:
        """A value comparable with ``expires_at`` as simplejwt stores it.

        simplejwt writes naive UTC when ``USE_TZ = False`` (not local time), so the
        value is always UTC, naive or aware as the setting asks.
        """
        value = self.moment if moment is None else moment
        return value if settings.USE_TZ else value.replace(tzinfo=None)

    def db_now(self) -> datetime:
        return self.db_value(self.now)


def as_timedelta(value: float | timedelta | None) -> timedelta:
    """LEEWAY may be seconds (int/float) or a timedelta, as in simplejwt's TokenBackend."""
    if value is None:
        return timedelta(0)
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


def sliding_tokens_in_use(configured: str | bool) -> bool:
    """True when TOKENOPS says so, or (``"auto"``) when a SlidingToken can authenticate."""
    if configured != "auto":
        return bool(configured)
    for path in jwt_settings().AUTH_TOKEN_CLASSES:
        token_class = import_string(path) if isinstance(path, str) else path
        if isinstance(token_class, type) and issubclass(token_class, SlidingToken):
            return True
    return False


def sliding_window(leeway: timedelta) -> timedelta:
    """How long after its first expiry a sliding token can still be accepted.

    A refresh is allowed until ``refresh_exp + leeway`` and gives ``exp = now +
    SLIDING_TOKEN_LIFETIME``, accepted until ``exp + leeway``. With ``refresh_exp =
    created + SLIDING_TOKEN_REFRESH_LIFETIME`` and the row's ``expires_at = created +
    SLIDING_TOKEN_LIFETIME``, that is ``expires_at + REFRESH_LIFETIME + 2 * leeway``.
    """
    return as_timedelta(jwt_settings().SLIDING_TOKEN_REFRESH_LIFETIME) + 2 * leeway


def safe_cutoff(
    older_than: timedelta,
    *,
    older_than_source: str = FROM_OPTION,
    sliding_tokens: str | bool = "auto",
    now: datetime | None = None,
) -> Cutoff:
    """Rows that expired more than ``max(older_than, LEEWAY, sliding window)`` ago.

    ``older_than_source`` is FROM_OPTION when the caller was given ``older_than``,
    FROM_SETTING when it is TOKENOPS["OLDER_THAN"]; ``sliding_tokens`` is
    ``TOKENOPS["SLIDING_TOKENS"]``: ``"auto"``, True or False.
    """
    if older_than_source not in (FROM_OPTION, FROM_SETTING):
        raise ValueError(f"older_than_source must be {FROM_OPTION!r} or {FROM_SETTING!r}")
    now = now or datetime.now(UTC)
    leeway = as_timedelta(jwt_settings().LEEWAY)
    window = sliding_window(leeway) if sliding_tokens_in_use(sliding_tokens) else None
    candidates = [(older_than, OLDER_THAN), (leeway, LEEWAY)]
    if window is not None:
        candidates.append((window, SLIDING))
    margin, reason = max(candidates, key=lambda item: item[0])
    return Cutoff(
        now=now,
        older_than=older_than,
        older_than_source=older_than_source,
        leeway=leeway,
        sliding_window=window,
        margin=margin,
        reason=reason,
    )
