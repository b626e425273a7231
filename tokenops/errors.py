"""The one exception tokenops raises for problems a user can fix, and its shared messages."""

from __future__ import annotations

from django.db import connections
from django.utils.translation import gettext as _


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
        "alias": repr(alias),
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
