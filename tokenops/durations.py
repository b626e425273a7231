"""Parse human durations such as ``30m``, ``12h``, ``7d``, ``2w`` or ``1w2d``."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .errors import TokenopsError

UNITS: dict[str, timedelta] = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
MAX_DURATION = timedelta(days=3650)
EXAMPLES = gettext_lazy("30m, 12h, 7d, 2w or 1w2d")
_PART = re.compile(r"([0-9]+)([mhdw])")
_WHOLE = re.compile(r"(?:[0-9]+[mhdw])+")


def parse_duration(text: str) -> timedelta:
    """Return the timedelta for ``text``; ``"0"`` alone means no time at all."""
    cleaned = text.strip().lower()
    if cleaned == "0":
        return timedelta(0)
    if not _WHOLE.fullmatch(cleaned):
        raise TokenopsError(
            _(
                "Invalid duration %(text)s: use a whole number and a unit "
                "(m, h, d, w), for example %(examples)s."
            )
            % {"text": repr(text), "examples": EXAMPLES}
        )
    total = timedelta(0)
    for number, unit in _PART.findall(cleaned):
        if len(number) > 6:
            raise TokenopsError(too_large(text))
        total += int(number) * UNITS[unit]
    if total > MAX_DURATION:
        raise TokenopsError(too_large(text))
    return total


def too_large(text: str) -> str:
    return _("Duration %(text)s is too large (at most 10 years).") % {"text": repr(text)}


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
