"""tokenops.scheduling.beat against django-celery-beat's real tables in the test database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.test import override_settings
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from my_bathhouse_backend import settings as example_settings
from tokenops.errors import TokenopsError
from tokenops.scheduling import beat
from tokenops.scheduling.schedule import DAYS, WEEKDAYS, Schedule, parse_schedule

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "tokenops: purge expired tokens"


def install(**options):
    """Parse the options as the command does, then install."""
    defaults = {"at": "03:30", "every": "day", "older_than": "7d"}
    return beat.install_periodic_task(parse_schedule(**{**defaults, **options}))


def the_task() -> PeriodicTask:
    return PeriodicTask.objects.select_related("crontab").get(name=NAME)


def test_install_creates_one_daily_task_in_the_project_time_zone():
    with override_settings(TIME_ZONE="Europe/Moscow"):
        result = install(at="03:30", every="day", older_than="7d")

    assert result.action == beat.CREATED
    assert result.name == NAME
    assert result.task == "tokenops.tasks.purge_expired_tokens"
    assert result.schedule.crontab == "30 3 * * *"
    assert result.schedule.described == "every day at 03:30"
    assert result.timezone == "Europe/Moscow"
    assert "every day at 03:30 (Europe/Moscow), crontab '30 3 * * *'" in result.message()
    assert result.kwargs == {"older_than": "7d", "database": "default"}
    assert result.database == "default"
    assert result.others == ()
    task = the_task()
    assert task.task == "tokenops.tasks.purge_expired_tokens"
    assert json.loads(task.kwargs) == {"older_than": "7d", "database": "default"}
    assert task.args == "[]"
    assert task.enabled and not task.one_off
    assert task.interval is None and task.solar is None and task.clocked is None
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week) == ("30", "3", "*")
    assert (crontab.day_of_month, crontab.month_of_year) == ("*", "*")
    assert str(crontab.timezone) == "Europe/Moscow"


def test_weekly_means_sunday_for_celery_too():
    result = install(at="04:05", every="week")

    assert result.schedule.crontab == "5 4 * * 0"
    assert result.schedule.described == "every Sunday at 04:05"
    assert result.timezone == "UTC"
    schedule = the_task().crontab.schedule
    monday = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    schedule.nowfun = lambda: monday
    next_run = monday + schedule.remaining_estimate(monday)
    assert next_run == datetime(2024, 1, 7, 4, 5, tzinfo=UTC)
    assert next_run.strftime("%A") == "Sunday"


def test_install_twice_leaves_one_task_and_writes_nothing():
    install()
    first = the_task()
    changed_at = PeriodicTasks.last_change()

    again = install()

    assert again.action == beat.UNCHANGED
    assert again.changed == ()
    assert PeriodicTask.objects.count() == 1
    assert CrontabSchedule.objects.count() == 1
    second = the_task()
    assert second.date_changed == first.date_changed
    assert second.crontab_id == first.crontab_id
    assert PeriodicTasks.last_change() == changed_at


def test_kwargs_reformatted_in_the_admin_still_count_as_unchanged():
    install(older_than="7D")
    PeriodicTask.objects.filter(name=NAME).update(
        kwargs='{ "database" : "default",\n  "older_than": "7d" }'
    )

    assert install(older_than="7d").action == beat.UNCHANGED


def test_other_options_update_the_same_task_and_keep_admin_settings():
    install(at="03:30")
    task = the_task()
    task.queue = "maintenance"
    task.priority = 3
    task.description = "set in the admin"
    task.save()
    old_crontab = task.crontab_id

    result = install(at="02:15", every="week", older_than="14d", database="secondary")

    assert result.action == beat.UPDATED
    assert result.changed == ("schedule", "kwargs")
    assert PeriodicTask.objects.count() == 1
    task = the_task()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("15", "2", "0")
    assert json.loads(task.kwargs) == {"older_than": "14d", "database": "secondary"}
    assert (task.queue, task.priority, task.description) == ("maintenance", 3, "set in the admin")
    # The old crontab row is left alone (another task may use it).
    assert CrontabSchedule.objects.filter(pk=old_crontab).exists()


def test_install_repairs_a_task_changed_in_the_admin():
    install()
    task = the_task()
    interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    task.crontab = None
    task.interval = interval
    task.enabled = False
    task.task = "something.else"
    task.args = '["x"]'
    task.save()

    result = install()

    assert result.action == beat.UPDATED
    assert result.changed == ("task", "schedule", "kwargs", "enabled")
    task = the_task()
    assert task.interval is None
    assert task.crontab.minute == "30"
    assert task.enabled
    assert task.task == "tokenops.tasks.purge_expired_tokens"
    assert task.args == "[]"


def test_a_crontab_shared_with_another_task_is_reused_never_edited():
    shared = CrontabSchedule.objects.create(minute="30", hour="3", day_of_week="*", timezone="UTC")
    PeriodicTask.objects.create(name="reports", task="app.reports", crontab=shared)

    install(at="03:30")
    assert the_task().crontab_id == shared.pk

    install(at="05:00")

    shared.refresh_from_db()
    assert (shared.minute, shared.hour) == ("30", "3")
    assert the_task().crontab_id != shared.pk


def test_other_tasks_running_the_purge_are_reported():
    crontab = CrontabSchedule.objects.create(minute="0", hour="1", timezone="UTC")
    PeriodicTask.objects.create(
        name="hand made purge", task="tokenops.tasks.purge_expired_tokens", crontab=crontab
    )

    assert install().others == ("hand made purge",)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": "month"}, "Invalid --every 'month': use day or week."),
        ({"older_than": "soon"}, "Invalid duration 'soon'"),
    ],
)
def test_bad_options_raise_and_create_nothing(options, message):
    with pytest.raises(TokenopsError, match=message):
        install(**options)

    assert not PeriodicTask.objects.exists()
    assert not CrontabSchedule.objects.exists()


def test_uninstall_removes_the_task_then_reports_it_absent():
    install()
    crontab = the_task().crontab_id
    changed_at = PeriodicTasks.last_change()

    removed = beat.uninstall_periodic_task()

    assert (removed.action, removed.name) == (beat.REMOVED, NAME)
    assert not PeriodicTask.objects.exists()
    assert PeriodicTasks.last_change() > changed_at  # a running beat notices
    assert CrontabSchedule.objects.filter(pk=crontab).exists()
    assert beat.uninstall_periodic_task().action == beat.ABSENT


def test_uninstall_leaves_other_tasks_alone():
    crontab = CrontabSchedule.objects.create(minute="0", hour="1", timezone="UTC")
    PeriodicTask.objects.create(
        name="hand made purge", task="tokenops.tasks.purge_expired_tokens", crontab=crontab
    )
    install()

    beat.uninstall_periodic_task()

    assert list(PeriodicTask.objects.values_list("name", flat=True)) == ["hand made purge"]


def test_not_in_installed_apps_is_one_clear_line():
    apps = [app for app in example_settings.INSTALLED_APPS if app != "django_celery_beat"]
    with override_settings(INSTALLED_APPS=apps), pytest.raises(TokenopsError) as caught:
        install()

    assert str(caught.value) == (
        "'django_celery_beat' is not in INSTALLED_APPS: add it and run "
        "'python manage.py migrate django_celery_beat'."
    )


def test_unmigrated_tables_are_one_clear_line():
    call_command("migrate", "django_celery_beat", "zero", verbosity=0)
    try:
        with pytest.raises(TokenopsError) as installing:
            install()
        with pytest.raises(TokenopsError) as uninstalling:
            beat.uninstall_periodic_task()
    finally:
        call_command("migrate", "django_celery_beat", verbosity=0)

    message = str(installing.value)
    assert message.startswith("django-celery-beat is not migrated in database 'default' (")
    assert message.endswith(
        "migration(s) not applied): run 'python manage.py migrate django_celery_beat'."
    )
    assert str(uninstalling.value) == message
    assert "\n" not in message


def test_messages_say_what_happened():
    created = install(at="03:30", every="week", older_than="7d")
    unchanged = install(at="03:30", every="week", older_than="7d")
    crontab = CrontabSchedule.objects.create(minute="0", hour="1", timezone="UTC")
    PeriodicTask.objects.create(
        name="hand made purge", task="tokenops.tasks.purge_expired_tokens", crontab=crontab
    )
    updated = install(at="04:00", every="week", older_than="7d")

    tail = (
        "tokenops.tasks.purge_expired_tokens every Sunday at {at} (UTC), crontab '{cron}', "
        'kwargs {{"older_than": "7d", "database": "default"}}.'
    )
    assert created.message() == "Created periodic task 'tokenops: purge expired tokens': " + (
        tail.format(at="03:30", cron="30 3 * * 0")
    )
    assert unchanged.message() == (
        "Periodic task 'tokenops: purge expired tokens' is already installed; nothing changed: "
        + tail.format(at="03:30", cron="30 3 * * 0")
    )
    assert updated.message() == (
        "Updated periodic task 'tokenops: purge expired tokens' (schedule): "
        + tail.format(at="04:00", cron="0 4 * * 0")
        + "\nNote: periodic task(s) 'hand made purge' also run "
        "tokenops.tasks.purge_expired_tokens."
    )
    assert beat.uninstall_periodic_task().message() == (
        "Removed periodic task 'tokenops: purge expired tokens'."
    )
    assert beat.uninstall_periodic_task().message() == (
        "Periodic task 'tokenops: purge expired tokens' is not installed; nothing to remove."
    )


def test_the_task_name_is_fixed():
    assert beat.PERIODIC_TASK_NAME == NAME
    assert install().name == NAME


@pytest.mark.parametrize("day", DAYS)
def test_crontab_fields_of_a_weekly_schedule(day):
    schedule = Schedule(22, 7, "week", day)

    fields = beat.crontab_fields(schedule)

    assert fields == {
        "minute": "7",
        "hour": "22",
        "day_of_week": str(WEEKDAYS[day][1]),
        "day_of_month": "*",
        "month_of_year": "*",
    }
    # The same five fields, in cron's order, as the crontab the hints print.
    order = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    assert " ".join(fields[name] for name in order) == schedule.crontab


@pytest.mark.parametrize("day", DAYS)
def test_crontab_fields_of_a_daily_schedule_ignore_the_day(day):
    assert beat.crontab_fields(Schedule(0, 0, "day", day))["day_of_week"] == "*"


@pytest.mark.parametrize("offset", range(7))
def test_a_weekly_task_next_runs_on_its_day(offset):
    """Celery's own reading of the stored row: the next run falls on the chosen weekday."""
    day = DAYS[offset]
    result = install(at="06:45", every="week", day=day)

    assert result.schedule.crontab == f"45 6 * * {WEEKDAYS[day][1]}"
    schedule = the_task().crontab.schedule
    sunday = datetime(2023, 12, 31, 12, 0, tzinfo=UTC)  # Monday is 2024-01-01
    schedule.nowfun = lambda: sunday
    next_run = sunday + schedule.remaining_estimate(sunday)
    assert next_run == datetime(2024, 1, 1 + offset, 6, 45, tzinfo=UTC)
    assert next_run.strftime("%A") == WEEKDAYS[day][0]


def test_older_than_defaults_to_the_setting_as_written():
    with override_settings(TOKENOPS={"OLDER_THAN": " 3D "}):
        result = install(older_than=None)

    assert result.kwargs == {"older_than": "3d", "database": "default"}
    assert json.loads(the_task().kwargs) == {"older_than": "3d", "database": "default"}


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
def test_the_purge_database_is_a_task_argument_not_where_the_task_lives():
    result = install(database="secondary")

    assert result.database == beat.beat_database() == "default"
    assert result.kwargs == {"older_than": "7d", "database": "secondary"}
    assert json.loads(the_task().kwargs)["database"] == "secondary"


def test_an_unknown_purge_database_is_refused_before_writing():
    with pytest.raises(TokenopsError, match=r"^Unknown database alias 'nope' \(configured: "):
        beat.install_periodic_task(Schedule(3, 0, database="nope"))

    assert not PeriodicTask.objects.exists()
    assert not CrontabSchedule.objects.exists()
