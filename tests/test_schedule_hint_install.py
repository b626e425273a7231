"""token_schedule_hint --platform celery --install / --uninstall through manage.py."""

import json

import pytest
from django_celery_beat.models import PeriodicTask

from tests.conftest import run_manage, sqlite_url

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "tokenops: purge expired tokens"
INSTALL = ["token_schedule_hint", "--platform", "celery", "--install"]


def test_install_twice_leaves_one_periodic_task(manage):
    first = manage(*INSTALL, "--at", "04:15", "--older-than", "2w")
    second = manage(*INSTALL, "--at", "04:15", "--older-than", "2w")

    assert (first.code, first.err) == (0, "")
    assert first.out.startswith(
        f"Created periodic task '{NAME}': tokenops.tasks.purge_expired_tokens every day at "
        "04:15 (UTC), crontab '15 4 * * *', kwargs "
    )
    assert (second.code, second.err) == (0, "")
    assert second.out.startswith(f"Periodic task '{NAME}' is already installed; nothing changed")
    task = PeriodicTask.objects.get()
    assert task.name == NAME
    assert json.loads(task.kwargs) == {"older_than": "2w", "database": "default"}


def test_install_weekly_on_a_chosen_day_updates_the_task(manage):
    manage(*INSTALL)
    result = manage(*INSTALL, "--every", "week", "--day", "wed", "--at", "02:00")

    assert result.code == 0
    assert result.out.startswith(f"Updated periodic task '{NAME}' (schedule)")
    assert "every Wednesday at 02:00 (UTC), crontab '0 2 * * 3'" in result.out
    assert PeriodicTask.objects.get().crontab.day_of_week == "3"


def test_install_defaults_older_than_to_the_setting(manage, settings):
    settings.TOKENOPS = {"OLDER_THAN": "3d"}
    manage(*INSTALL)
    assert json.loads(PeriodicTask.objects.get().kwargs)["older_than"] == "3d"


def test_uninstall_removes_it_and_says_when_absent(manage):
    manage(*INSTALL)
    removed = manage("token_schedule_hint", "--platform", "celery", "--uninstall")
    absent = manage("token_schedule_hint", "--platform", "celery", "--uninstall")

    assert (removed.code, removed.out) == (0, f"Removed periodic task '{NAME}'.\n")
    assert (absent.code, absent.out) == (
        0,
        f"Periodic task '{NAME}' is not installed; nothing to remove.\n",
    )
    assert not PeriodicTask.objects.exists()


@pytest.mark.parametrize("flag", ["--install", "--uninstall"])
def test_flags_need_the_celery_platform(manage, flag):
    result = manage("token_schedule_hint", "--platform", "linux", flag)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"CommandError: {flag} works with --platform celery only.\n"
    assert not PeriodicTask.objects.exists()


def test_install_and_uninstall_exclude_each_other(manage):
    result = manage(*INSTALL, "--uninstall")
    assert result.code == 2
    assert result.err == (
        "manage.py token_schedule_hint: error: argument --uninstall: not allowed with "
        "argument --install\n"
    )


@pytest.mark.slow
def test_install_on_an_unmigrated_database_says_to_migrate(tmp_path):
    done = run_manage(*INSTALL, env={"DATABASE_URL": sqlite_url(tmp_path / "new.sqlite3")})
    assert done.returncode == 1
    assert done.stderr.decode().startswith(
        "CommandError: django-celery-beat is not migrated in database 'default' ("
    )
    assert done.stderr.decode().endswith("run 'python manage.py migrate django_celery_beat'.\n")


def test_install_refuses_an_unknown_database_alias(manage):
    result = manage(*INSTALL, "--database", "nope")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "CommandError: Unknown database alias 'nope' (configured: default, secondary).\n"
    )
    assert not PeriodicTask.objects.exists()


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
def test_every_printed_schedule_purges_the_chosen_database(manage):
    result = manage("token_schedule_hint", "--platform", "all", "--database", "secondary")
    assert result.code == 0
    lines = result.out.splitlines()
    crontab = next(line.strip() for line in lines if line.strip().startswith("0 3 * * *"))
    assert crontab.endswith("cleanup_tokens.sh --database secondary")
    schtasks = next(line for line in lines if "schtasks /Create" in line)
    assert '--database secondary" /SC DAILY' in schtasks
    assert any('"kwargs": {"older_than": "0d", "database": "secondary"}' in line for line in lines)
    assert any(
        line.startswith("ExecStart=") and line.endswith("--database secondary") for line in lines
    )
