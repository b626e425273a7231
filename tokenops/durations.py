"""Parse human durations such as ``30m``, ``12h``, ``7d``, ``2w`` or ``1w2d``."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import TokenopsError

UNITS: dict[str, timedelta] = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
MAX_DURATION = timedelta(days=3650)
EXAMPLES = "30m, 12h, 7d, 2w or 1w2d"
_PART = re.compile(r"(\d+)([mhdw])")
_WHOLE = re.compile(r"(?:\d+[mhdw])+")


def parse_duration(text: str) -> timedelta:
    """Return the timedelta for ``text``; ``"0"`` alone means no time at all."""
    cleaned = text.strip().lower()
    if cleaned == "0":
        return timedelta(0)
    if not _WHOLE.fullmatch(cleaned):
        raise TokenopsError(
            f"Invalid duration {text!r}: use a whole number and a unit "
            f"(m, h, d, w), for example {EXAMPLES}."
        )
    total = timedelta(0)
    for number, unit in _PART.findall(cleaned):
        if len(number) > 6:
            raise TokenopsError(f"Duration {text!r} is too large (at most 10 years).")
        total += int(number) * UNITS[unit]
    if total > MAX_DURATION:
        raise TokenopsError(f"Duration {text!r} is too large (at most 10 years).")
    return total


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
