"""Is this project ready for tokenops? A Django system check and a per-database check."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core import checks
from django.db import DatabaseError, connections

from .errors import TokenopsError

BLACKLIST_APP = "rest_framework_simplejwt.token_blacklist"
MISSING_APP = (
    f"'{BLACKLIST_APP}' is not in INSTALLED_APPS: tokenops works on simplejwt's "
    "token blacklist tables; add the app and run 'python manage.py migrate'."
)


@checks.register()
def check_blacklist_app(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if apps.is_installed(BLACKLIST_APP):
        return []
    return [checks.Error(MISSING_APP, id="tokenops.E001")]


def ensure_ready(using: str) -> None:
    """Raise TokenopsError unless the blacklist app, the database and its tables are there."""
    if not apps.is_installed(BLACKLIST_APP):
        raise TokenopsError(MISSING_APP)
    if using not in connections:
        known = ", ".join(sorted(connections.settings)) or "none"
        raise TokenopsError(f"Unknown database alias {using!r} (configured: {known}).")
    connection = connections[using]
    try:
        connection.ensure_connection()
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        raise TokenopsError(f"Cannot reach database {using!r}: {first_line(exc)}") from exc
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
            f"Table {missing[0]} does not exist in database {using!r}: "
            f"run 'python manage.py migrate --database {using}'."
        )


def first_line(exc: BaseException) -> str:
    """Database drivers put several lines in a message; a log line wants the first."""
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]
