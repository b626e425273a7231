"""Parse human durations such as ``30m``, ``12h``, ``7d``, ``2w`` or ``1w2d``."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .errors import TokenopsError, shown

UNITS: dict[str, timedelta] = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
MAX_DURATION = timedelta(days=3650)
EXAMPLES = gettext_lazy("30m, 12h, 7d, 2w or 1w2d")
# Each unit at most once, from the largest to the smallest, as format_duration writes
# them: "7d7d" or "30m1d" is more likely a typo than a sum, so it is refused.
_ORDERED = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?")
_ANY = re.compile(r"(?:[0-9]+[mhdw])+")
_ORDER = "wdhm"
# Significant digits beyond which any number of any unit exceeds MAX_DURATION (10 years
# are 5,256,000 minutes); checked before int() so a 10,000-digit value costs nothing.
_MAX_DIGITS = len(str(int(MAX_DURATION / UNITS["m"])))


def parse_duration(text: str) -> timedelta:
    """Return the timedelta for ``text``; ``"0"`` alone means no time at all.

    Surrounding blanks are ignored and units are case-insensitive ("7D" is 7 days), except
    "M": it reads as months as often as minutes, so it is refused rather than guessed.
    """
    cleaned = text.strip()
    if cleaned == "0":
        return timedelta(0)
    lowered = cleaned.lower()
    if "M" in cleaned and _ANY.fullmatch(lowered):
        raise TokenopsError(
            _(
                "Invalid duration %(text)s: M is ambiguous (months or minutes?); write m for "
                "minutes, or weeks or days for months, for example %(examples)s."
            )
            % {"text": shown(text), "examples": EXAMPLES}
        )
    match = _ORDERED.fullmatch(lowered) if cleaned else None
    if match is None and _ANY.fullmatch(lowered):
        raise TokenopsError(
            _(
                "Invalid duration %(text)s: give each unit at most once, largest first, "
                "for example %(examples)s."
            )
            % {"text": shown(text), "examples": EXAMPLES}
        )
    if match is None:
        raise TokenopsError(
            _(
                "Invalid duration %(text)s: use a whole number and a unit "
                "(m, h, d, w), for example %(examples)s."
            )
            % {"text": shown(text), "examples": EXAMPLES}
        )
    total = timedelta(0)
    for number, unit in zip(match.groups(), _ORDER, strict=True):
        if number is None:
            continue
        digits = number.lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            raise TokenopsError(too_large(text))
        total += int(digits) * UNITS[unit]
    if total > MAX_DURATION:
        raise TokenopsError(too_large(text))
    return total


def too_large(text: str) -> str:
    return _("Duration %(text)s is too large (at most 10 years).") % {"text": shown(text)}


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the same units that ``parse_duration`` reads."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0m"
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
