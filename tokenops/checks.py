"""Is this project ready for tokenops? A Django system check and per-database checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.apps import apps
from django.core import checks
from django.db import DatabaseError, connections
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .errors import TokenopsError, unknown_alias, unreachable

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


def ensure_alias(using: str) -> None:
    if using not in connections:
        raise TokenopsError(unknown_alias(using))


def ensure_database(using: str) -> None:
    """The alias is configured and, for SQLite, its file exists (connecting would create it)."""
    ensure_alias(using)
    connection = connections[using]
    name = str(connection.settings_dict.get("NAME") or "")
    # Connecting would create an empty file where a path is mistyped.
    if (
        connection.vendor == "sqlite"
        and name
        and not name.startswith("file:")
        and not connection.is_in_memory_db()
        and not Path(name).exists()
    ):
        raise TokenopsError(
            _(
                "Database file %(path)s of %(alias)s does not exist: check DATABASES, or "
                "run 'python manage.py migrate' to create it."
            )
            % {"path": name, "alias": repr(using)}
        )


def ensure_ready(using: str) -> None:
    """Raise TokenopsError unless the blacklist app, the database and its tables are there."""
    if not apps.is_installed(BLACKLIST_APP):
        raise TokenopsError(str(MISSING_APP))
    ensure_database(using)
    connection = connections[using]
    try:
        connection.ensure_connection()
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        raise TokenopsError(unreachable(using, exc)) from exc
    from rest_framework_simplejwt.token_blacklist.models import (
        BlacklistedToken,
        OutstandingToken,
    )

    others = [
        relation.related_model._meta.label
        for relation in OutstandingToken._meta.related_objects
        if relation.related_model is not BlacklistedToken
    ]
    if others:
        # The purge deletes rows with one statement per batch, without Django's collector.
        raise TokenopsError(
            _(
                "%(models)s refer to OutstandingToken; tokenops only purges projects where "
                "BlacklistedToken is the one model that does."
            )
            % {"models": ", ".join(sorted(others))}
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


def pending_migrations(using: str, app_label: str | None = None) -> list[str]:
    """The unapplied migrations on ``using`` (of one app, or all), as "app.name" labels."""
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections[using])
        graph = executor.loader.graph
        targets = graph.leaf_nodes(app_label) if app_label else graph.leaf_nodes()
        plan = executor.migration_plan(targets)
    except DatabaseError as exc:
        raise TokenopsError(unreachable(using, exc)) from exc
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
