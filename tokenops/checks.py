"""Is this project ready for tokenops? A Django system check and a per-database check."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core import checks
from django.db import DatabaseError, connections
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .errors import TokenopsError

BLACKLIST_APP = "rest_framework_simplejwt.token_blacklist"
MISSING_APP = format_lazy(
    _(
        "'{app}' is not in INSTALLED_APPS: tokenops works on simplejwt's "
        "token blacklist tables; add the app and run 'python manage.py migrate'."
    ),
    app=BLACKLIST_APP,
)


@checks.register()
def check_blacklist_app(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if apps.is_installed(BLACKLIST_APP):
        return []
    return [checks.Error(MISSING_APP, id="tokenops.E001")]


def ensure_ready(using: str) -> None:
    """Raise TokenopsError unless the blacklist app, the database and its tables are there."""
    if not apps.is_installed(BLACKLIST_APP):
        raise TokenopsError(str(MISSING_APP))
    if using not in connections:
        known = ", ".join(sorted(connections.settings)) or _("none")
        raise TokenopsError(
            _("Unknown database alias %(alias)s (configured: %(known)s).")
            % {"alias": repr(using), "known": known}
        )
    connection = connections[using]
    try:
        connection.ensure_connection()
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        raise TokenopsError(
            _("Cannot reach database %(alias)s: %(error)s")
            % {"alias": repr(using), "error": first_line(exc)}
        ) from exc
    from rest_framework_simplejwt.token_blacklist.models import (
        BlacklistedToken,
        OutstandingToken,
    )

    missing = [
        model._meta.db_table
        for model in (OutstandingToken, BlacklistedToken)
        if model._meta.db_table not in tables
    ]
    if missing:
        raise TokenopsError(
            _(
                "Table %(table)s does not exist in database %(alias)s: "
                "run 'python manage.py migrate --database %(database)s'."
            )
            % {"table": missing[0], "alias": repr(using), "database": using}
        )


def first_line(exc: BaseException) -> str:
    """Database drivers put several lines in a message; a log line wants the first."""
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]
