"""Gather what token_report shows into one Report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from .checks import ensure_ready
from .counting import TokenCounts, UserTokens, count_tokens, top_users
from .cutoff import Cutoff, safe_cutoff

if TYPE_CHECKING:
    from .history import PurgeStatus


@dataclass(frozen=True)
class Report:
    database: str
    cutoff: Cutoff
    counts: TokenCounts
    top_users: list[UserTokens]
    history: PurgeStatus | None = None


def build_report(using: str, older_than: timedelta, top: int) -> Report:
    from .history import purge_status  # models: only once the app registry is ready

    ensure_ready(using)
    cutoff = safe_cutoff(older_than)
    counts = count_tokens(using, cutoff)
    return Report(
        database=using,
        cutoff=cutoff,
        counts=counts,
        top_users=top_users(using, top),
        history=purge_status(using, cutoff.now, counts.outstanding.purgeable),
    )
