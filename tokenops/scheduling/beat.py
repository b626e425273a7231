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
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import router, transaction

from ..app_settings import get_settings
from ..checks import ensure_alias, pending_migrations
from ..errors import TokenopsError
from .schedule import CELERY_TASK, Schedule

PERIODIC_TASK_NAME = "tokenops: purge expired tokens"
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
class InstallResult:
    action: str  # CREATED, UPDATED or UNCHANGED
    name: str
    task: str
    schedule: Schedule
    timezone: str  # the crontab's: TIME_ZONE
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
            f"{what}: {self.task} {self.schedule.described} ({self.timezone}), "
            f"crontab '{self.schedule.crontab}', "
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
    from django_celery_beat.models import PeriodicTask

    alias = router.db_for_write(PeriodicTask)
    plan = pending_migrations(alias, BEAT_APP)
    if plan:
        raise TokenopsError(
            f"django-celery-beat is not migrated in database {alias!r} ({len(plan)} "
            f"migration(s) not applied): run '{migrate_hint(alias)}'."
        )
    return alias


def crontab_fields(schedule: Schedule) -> dict[str, str]:
    """The CrontabSchedule columns of ``schedule`` (their text, as the model stores it)."""
    return {
        "minute": str(schedule.minute),
        "hour": str(schedule.hour),
        "day_of_week": schedule.cron_day_of_week,
        "day_of_month": "*",
        "month_of_year": "*",
    }


def crontab_matches(crontab: Any, schedule: Schedule, timezone: str) -> bool:
    return (
        crontab is not None
        and {name: getattr(crontab, name) for name in crontab_fields(schedule)}
        == crontab_fields(schedule)
        and str(crontab.timezone) == timezone
    )


def find_or_create_crontab(alias: str, schedule: Schedule, timezone: str) -> Any:
    from django_celery_beat.models import CrontabSchedule

    fields = crontab_fields(schedule)
    # The timezone column is compared in Python: the field stores names, and the admin
    # may have made duplicates, which get_or_create would refuse.
    for crontab in CrontabSchedule.objects.using(alias).filter(**fields).order_by("pk"):
        if str(crontab.timezone) == timezone:
            return crontab
    return CrontabSchedule.objects.using(alias).create(**fields, timezone=timezone)


def stored_kwargs(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return None


def install_periodic_task(schedule: Schedule) -> InstallResult:
    """Create or update the one PeriodicTask that runs the purge on ``schedule``.

    ``schedule.database`` is the alias the scheduled purge works on (a task argument);
    the PeriodicTask itself is stored where django-celery-beat's models are routed. The
    crontab runs in TIME_ZONE; ``older_than`` defaults to TOKENOPS["OLDER_THAN"] as written.
    """
    ensure_alias(schedule.database)
    older_than = schedule.older_than or get_settings().older_than_text
    kwargs = {"older_than": older_than, "database": schedule.database}
    timezone = str(settings.TIME_ZONE or "UTC")
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
                    ("task", task.task != CELERY_TASK),
                    (
                        "schedule",
                        not crontab_matches(task.crontab, schedule, timezone)
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
                task.crontab = find_or_create_crontab(alias, schedule, timezone)
                task.interval = task.solar = task.clocked = None
            task.task = CELERY_TASK
            task.args = "[]"
            task.kwargs = json.dumps(kwargs)
            task.enabled = True
            task.one_off = False
            task.save(using=alias)
        others = tuple(
            PeriodicTask.objects.using(alias)
            .filter(task=CELERY_TASK)
            .exclude(name=PERIODIC_TASK_NAME)
            .order_by("name")
            .values_list("name", flat=True)
        )
    return InstallResult(
        action=action,
        name=PERIODIC_TASK_NAME,
        task=CELERY_TASK,
        schedule=schedule,
        timezone=timezone,
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
