"""Gather what token_report shows into one Report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .checks import ensure_ready
from .counting import TokenCounts, UserTokens, count_tokens, top_users
from .cutoff import Cutoff, safe_cutoff


@dataclass(frozen=True)
class Report:
    database: str
    cutoff: Cutoff
    counts: TokenCounts
    top_users: list[UserTokens]


def build_report(using: str, older_than: timedelta, top: int) -> Report:
    ensure_ready(using)
    cutoff = safe_cutoff(older_than)
    return Report(
        database=using,
        cutoff=cutoff,
        counts=count_tokens(using, cutoff),
        top_users=top_users(using, top),
    )
