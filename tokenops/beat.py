"""Schedule the purge as one django-celery-beat ``PeriodicTask``, idempotently.

The schedule then lives in the database, where the Django admin edits it and beat's
``DatabaseScheduler`` reads it. The task is found by its fixed name: installing again
with the same options writes nothing; with other options it updates that one task in
place. Only what install owns is compared and set (task, crontab, kwargs, enabled), so
a queue, priority or description set in the admin survives a re-install.

Crontab rows are never edited (other tasks may share them): a new time picks or creates
another row, and rows no task uses any more are left for the admin to reuse or delete.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from datetime import time
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connections, router, transaction

from .checks import ensure_alias, first_line
from .durations import parse_duration
from .errors import TokenopsError
from .schedule_hints import CRON_DAYS, DAY_NAMES

PERIODIC_TASK_NAME = "tokenops: purge expired tokens"
TASK_NAME = "tokenops.tasks.purge_expired_tokens"  # tokenops.tasks needs Celery to import
BEAT_APP = "django_celery_beat"
DESCRIPTION = (
    "Deletes simplejwt token rows no setting can still accept (tokenops). "
    "Created by 'manage.py token_schedule_hint --platform celery --install'."
)

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
REMOVED = "removed"
ABSENT = "absent"


@dataclass(frozen=True)
class Schedule:
    """A daily or weekly crontab at one minute, in one time zone."""

    minute: str
    hour: str
    day_of_week: str
    timezone: str

    @property
    def crontab(self) -> str:
        return f"{self.minute} {self.hour} * * {self.day_of_week}"

    def describe(self) -> str:
        if self.day_of_week == "*":
            days = "every day"
        else:
            day = next(d for d, n in CRON_DAYS.items() if str(n) == self.day_of_week)
            days = f"every {DAY_NAMES[day]}"
        return f"{days} at {int(self.hour):02d}:{int(self.minute):02d} ({self.timezone})"


@dataclass(frozen=True)
class InstallResult:
    action: str  # CREATED, UPDATED or UNCHANGED
    name: str
    task: str
    schedule: Schedule
    kwargs: dict[str, Any]
    changed: tuple[str, ...]  # what an update changed: task, schedule, kwargs, enabled
    database: str  # where the PeriodicTask is stored
    others: tuple[str, ...]  # other periodic tasks that run the same task

    def message(self) -> str:
        """What a command prints: what happened, then the schedule, then any duplicate."""
        what = {
            CREATED: f"Created periodic task '{self.name}'",
            UPDATED: f"Updated periodic task '{self.name}' ({', '.join(self.changed)})",
            UNCHANGED: f"Periodic task '{self.name}' is already installed; nothing changed",
        }[self.action]
        lines = [
            f"{what}: {self.task} {self.schedule.describe()}, crontab '{self.schedule.crontab}', "
            f"kwargs {json.dumps(self.kwargs)}."
        ]
        if self.others:
            names = ", ".join(f"'{name}'" for name in self.others)
            lines.append(f"Note: periodic task(s) {names} also run {self.task}.")
        return "\n".join(lines)


@dataclass(frozen=True)
class UninstallResult:
    action: str  # REMOVED or ABSENT
    name: str
    database: str

    def message(self) -> str:
        if self.action == REMOVED:
            return f"Removed periodic task '{self.name}'."
        return f"Periodic task '{self.name}' is not installed; nothing to remove."


def migrate_hint(alias: str) -> str:
    option = "" if alias == "default" else f" --database {alias}"
    return f"python manage.py migrate {BEAT_APP}{option}"


def beat_database() -> str:
    """Raise TokenopsError unless django-celery-beat is installed and migrated; return its alias."""
    if importlib.util.find_spec(BEAT_APP) is None:
        raise TokenopsError(
            "django-celery-beat is not installed: pip install 'tokenops[celery]', add "
            f"'{BEAT_APP}' to INSTALLED_APPS and run 'python manage.py migrate'."
        )
    if not apps.is_installed(BEAT_APP):
        raise TokenopsError(
            f"'{BEAT_APP}' is not in INSTALLED_APPS: add it and run "
            f"'python manage.py migrate {BEAT_APP}'."
        )
    from django.db.migrations.executor import MigrationExecutor
    from django_celery_beat.models import PeriodicTask

    alias = router.db_for_write(PeriodicTask)
    try:
        executor = MigrationExecutor(connections[alias])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes(BEAT_APP))
    except DatabaseError as exc:
        raise TokenopsError(f"Cannot reach database {alias!r}: {first_line(exc)}") from exc
    if plan:
        raise TokenopsError(
            f"django-celery-beat is not migrated in database {alias!r} ({len(plan)} "
            f"migration(s) not applied): run '{migrate_hint(alias)}'."
        )
    return alias


def make_schedule(at: time, every: str, day: str = "sun") -> Schedule:
    """Daily, or weekly on ``day`` (mon..sun; Sunday unless told)."""
    if every not in ("day", "week"):
        raise TokenopsError(f"every must be 'day' or 'week', got {every!r}.")
    if day not in CRON_DAYS:
        raise TokenopsError(f"day must be one of {', '.join(CRON_DAYS)}, got {day!r}.")
    return Schedule(
        minute=str(at.minute),
        hour=str(at.hour),
        day_of_week="*" if every == "day" else str(CRON_DAYS[day]),
        timezone=str(settings.TIME_ZONE or "UTC"),
    )


def crontab_matches(crontab: Any, schedule: Schedule) -> bool:
    return crontab is not None and (
        crontab.minute,
        crontab.hour,
        crontab.day_of_week,
        crontab.day_of_month,
        crontab.month_of_year,
        str(crontab.timezone),
    ) == (schedule.minute, schedule.hour, schedule.day_of_week, "*", "*", schedule.timezone)


def find_or_create_crontab(alias: str, schedule: Schedule) -> Any:
    from django_celery_beat.models import CrontabSchedule

    fields = {
        "minute": schedule.minute,
        "hour": schedule.hour,
        "day_of_week": schedule.day_of_week,
        "day_of_month": "*",
        "month_of_year": "*",
    }
    # The timezone column is compared in Python: the field stores names, and the admin
    # may have made duplicates, which get_or_create would refuse.
    for crontab in CrontabSchedule.objects.using(alias).filter(**fields).order_by("pk"):
        if str(crontab.timezone) == schedule.timezone:
            return crontab
    return CrontabSchedule.objects.using(alias).create(**fields, timezone=schedule.timezone)


def stored_kwargs(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return None


def install_periodic_task(
    *, at: time, every: str, older_than: str, database: str = "default", day: str = "sun"
) -> InstallResult:
    """Create or update the one PeriodicTask that runs the purge at ``at``, daily or weekly.

    ``database`` is the alias the scheduled purge works on (a task argument); the
    PeriodicTask itself is stored where django-celery-beat's models are routed.
    """
    parse_duration(older_than)
    ensure_alias(database)
    schedule = make_schedule(at, every, day)
    kwargs = {"older_than": older_than.strip().lower(), "database": database}
    alias = beat_database()
    from django_celery_beat.models import PeriodicTask

    with transaction.atomic(using=alias):
        # No select_related: PostgreSQL refuses FOR UPDATE on the nullable side of a join.
        task = (
            PeriodicTask.objects.using(alias)
            .select_for_update()
            .filter(name=PERIODIC_TASK_NAME)
            .first()
        )
        if task is None:
            task = PeriodicTask(name=PERIODIC_TASK_NAME, description=DESCRIPTION)
            action, changed = CREATED, ()
        else:
            changed = tuple(
                label
                for label, differs in (
                    ("task", task.task != TASK_NAME),
                    (
                        "schedule",
                        not crontab_matches(task.crontab, schedule)
                        or any((task.interval_id, task.solar_id, task.clocked_id)),
                    ),
                    ("kwargs", stored_kwargs(task.kwargs) != kwargs or task.args not in ("", "[]")),
                    ("enabled", not task.enabled or task.one_off),
                )
                if differs
            )
            action = UPDATED if changed else UNCHANGED
        if action != UNCHANGED:
            if action == CREATED or "schedule" in changed:
                task.crontab = find_or_create_crontab(alias, schedule)
                task.interval = task.solar = task.clocked = None
            task.task = TASK_NAME
            task.args = "[]"
            task.kwargs = json.dumps(kwargs)
            task.enabled = True
            task.one_off = False
            task.save(using=alias)
        others = tuple(
            PeriodicTask.objects.using(alias)
            .filter(task=TASK_NAME)
            .exclude(name=PERIODIC_TASK_NAME)
            .order_by("name")
            .values_list("name", flat=True)
        )
    return InstallResult(
        action=action,
        name=PERIODIC_TASK_NAME,
        task=TASK_NAME,
        schedule=schedule,
        kwargs=kwargs,
        changed=changed,
        database=alias,
        others=others,
    )


def uninstall_periodic_task() -> UninstallResult:
    """Remove the PeriodicTask install made; its crontab row is left for the admin."""
    alias = beat_database()
    from django_celery_beat.models import PeriodicTask

    with transaction.atomic(using=alias):
        task = PeriodicTask.objects.using(alias).filter(name=PERIODIC_TASK_NAME).first()
        if task is None:
            return UninstallResult(action=ABSENT, name=PERIODIC_TASK_NAME, database=alias)
        task.delete(using=alias)
    return UninstallResult(action=REMOVED, name=PERIODIC_TASK_NAME, database=alias)
