"""The one exception tokenops raises for problems a user can fix, and its shared messages."""

from __future__ import annotations

from django.db import connections
from django.utils.translation import gettext as _

# Exit codes, the same for every command (README, "Errors"): 2 when what was typed on the
# command line is wrong (an option, its value, a --database alias), 1 for every other
# fault (TOKENOPS, the database, the environment). Commands add their own answers on top
# (75 another purge is running, 130 interrupted, 4 --check needs attention).
ERROR = 1
USAGE_ERROR = 2

# Input echoed back in a message is cut to this many characters: a 10,000-character
# value must not become a 10,000-character log line.
SHOWN_CHARS = 40


def cut(text: str) -> str:
    """``text`` cut to SHOWN_CHARS characters, with "..." when it was longer."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def shown(value: object) -> str:
    """``value`` as a message quotes it: its repr, cut to SHOWN_CHARS characters and "...".

    A string is cut before quoting so the quotes stay visible; repr makes control
    characters printable, so the message stays one line.
    """
    if isinstance(value, str):
        return repr(value[:SHOWN_CHARS]) + ("..." if len(value) > SHOWN_CHARS else "")
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's str conversion limit (4300 digits)
        return f"<{type(value).__name__}>"
    return cut(text)


class TokenopsError(Exception):
    """A clear, one-line problem (bad input, missing table, unreachable database)."""


class PurgeSkipped(TokenopsError):
    """Another purge holds the database's purge lock: nothing was done; try again later."""


def first_line(exc: BaseException) -> str:
    """Database drivers put several lines in a message; a log line wants the first."""
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


def unknown_alias(alias: str) -> str:
    known = ", ".join(sorted(connections.settings)) or _("none")
    return _("Unknown database alias %(alias)s (configured: %(known)s).") % {
        "alias": shown(alias),
        "known": known,
    }


def unreachable(alias: str, exc: BaseException) -> str:
    return _("Cannot reach database %(alias)s: %(error)s") % {
        "alias": repr(alias),
        "error": first_line(exc),
    }


def database_error(alias: str, exc: BaseException) -> str:
    return _("Database error on %(alias)s: %(error)s") % {
        "alias": repr(alias),
        "error": first_line(exc),
    }


def cause_of(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``exc``, or the first exception it was raised while handling, that is one of ``kinds``.

    Ctrl+C inside a database driver's wait often surfaces as the error it caused
    ("connection in transaction status ACTIVE"): the interruption is behind it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while kinds and current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
