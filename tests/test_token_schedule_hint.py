"""token_schedule_hint, as a user runs it: ready-to-paste text with real paths parsed
back field by field, its warnings, its one-line errors, and --install / --uninstall."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import PurePosixPath, PureWindowsPath

import pytest
from django.test import override_settings
from django_celery_beat.models import PeriodicTask

from tests.utils import (
    PYTHON,
    ROOT,
    line_starting,
    project_env,
    run_manage,
    sqlite_url,
    write_plain_settings,
)
from tests.windows import cmd_unescape, split_windows

pytestmark = pytest.mark.django_db(transaction=True)

WIN_ROOT = PureWindowsPath(ROOT)
NAME = "tokenops: purge expired tokens"
INSTALL = ["token_schedule_hint", "--platform", "celery", "--install"]


def test_windows_schtasks_line(manage):
    result = manage(
        "token_schedule_hint", "--platform", "windows", "--at", "4:30", "--every", "week",
        "--day", "mon", "--older-than", "7d",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert f"Project root: {ROOT}  (from settings.BASE_DIR)" in result.out
    argv = split_windows(cmd_unescape(line_starting(result.out, "schtasks /Create")))
    assert argv == [
        "schtasks", "/Create", "/TN", "tokenops cleanup_tokens", "/TR", argv[5],
        "/SC", "WEEKLY", "/D", "MON", "/ST", "04:30", "/F",
    ]  # fmt: skip
    assert split_windows(argv[5]) == [
        str(WIN_ROOT / "scripts" / "cleanup_tokens.bat"),
        "--older-than",
        "7d",
    ]
    assert argv[5].startswith('"')


def test_windows_alternatives_checks_and_log(manage):
    result = manage("token_schedule_hint", "--platform", "windows")

    assert result.code == 0, result.err
    register = split_windows(cmd_unescape(line_starting(result.out, "powershell -NoProfile")))
    assert register == [
        "powershell", "-NoProfile", "-ExecutionPolicy", "Bypass",
        "-File", str(WIN_ROOT / "scripts" / "register_task.ps1"),
        "-At", "03:00", "-Every", "Day",
    ]  # fmt: skip
    assert "Register-ScheduledTask -TaskName 'tokenops cleanup_tokens'" in result.out
    assert 'schtasks /Query /TN "tokenops cleanup_tokens" /V /FO LIST' in result.out
    assert 'schtasks /Run /TN "tokenops cleanup_tokens"' in result.out
    assert f"Log: {WIN_ROOT / 'logs' / 'cleanup_tokens.log'} " in result.out
    assert "schtasks /Create" in result.out
    # This test machine is Linux: the hint says its paths are this machine's.
    assert "these paths are this Linux machine's" in result.out


def test_linux_crontab_line(manage, tmp_path):
    # The script the line names is one --write-scripts wrote (the example project ships none).
    scripts = tmp_path / "deploy"
    assert manage("token_schedule_hint", "--write-scripts", "--scripts-dir", str(scripts)).code == 0
    result = manage(
        "token_schedule_hint", "--platform", "linux", "--at", "23:05", "--every", "week",
        "--day", "sat", "--older-than", "1w2d", "--scripts-dir", str(scripts),
    )  # fmt: skip

    assert result.code == 0, result.err
    cron = line_starting(result.out, "5 23 ")
    minute, hour, dom, month, dow, command = cron.split(None, 5)
    assert (minute, hour, dom, month, dow) == ("5", "23", "*", "*", "6")
    script = scripts / "cleanup_tokens.sh"
    assert shlex.split(command) == [str(script), "--older-than", "1w2d"]
    assert os.access(script, os.X_OK)
    assert f"ExecStart={script} --older-than 1w2d" in result.out
    assert "OnCalendar=Sat *-*-* 23:05:00" in result.out
    assert "Persistent=true" in result.out
    assert f"Log: {ROOT / 'logs' / 'cleanup_tokens.log'} " in result.out


def test_daily_crontab_and_timer(manage):
    result = manage("token_schedule_hint", "--platform", "linux")

    assert result.code == 0, result.err
    cron = line_starting(result.out, "0 3 ")
    assert cron.split(None, 5)[:5] == ["0", "3", "*", "*", "*"]
    assert shlex.split(cron.split(None, 5)[5]) == [str(ROOT / "scripts" / "cleanup_tokens.sh")]
    assert "OnCalendar=*-*-* 03:00:00" in result.out


def test_celery_text(manage):
    result = manage(
        "token_schedule_hint", "--platform", "celery", "--at", "04:30", "--every", "week",
        "--day", "mon", "--older-than", "7d",
    )  # fmt: skip

    assert result.code == 0, result.err
    out = result.out
    assert "Task: tokenops.tasks.purge_expired_tokens" in out
    assert "celery -A my_bathhouse_backend worker -l info\n" in out
    assert "celery -A my_bathhouse_backend worker -l info --pool=solo" in out
    assert (
        "celery -A my_bathhouse_backend beat -l info "
        "--scheduler django_celery_beat.schedulers:DatabaseScheduler"
    ) in out
    assert "token_schedule_hint --platform celery --install" in out
    snippet = out.split("Add to settings.py:\n")[1].split("Run a worker")[0]
    namespace: dict[str, object] = {}
    exec(compile(snippet.replace("\n    ", "\n").strip(), "snippet", "exec"), namespace)  # noqa: S102
    entry = namespace["CELERY_BEAT_SCHEDULE"]["tokenops-purge-expired-tokens"]
    assert entry["task"] == "tokenops.tasks.purge_expired_tokens"
    assert entry["kwargs"] == {"older_than": "7d"}
    schedule = entry["schedule"]
    assert (schedule.hour, schedule.minute, schedule.day_of_week) == ({4}, {30}, {1})


def test_celery_default_older_than_is_the_setting(manage):
    with override_settings(TOKENOPS={"OLDER_THAN": "3d"}):
        result = manage("token_schedule_hint", "--platform", "celery")

    assert result.code == 0, result.err
    assert '"kwargs": {"older_than": "3d"}' in result.out
    assert 'day_of_week="*"' in result.out


def test_hint_works_without_celery_installed(tmp_path):
    # The example project loads its Celery app on import, so this runs in a project
    # of its own: only tokenops and simplejwt's blacklist.
    module = write_plain_settings(tmp_path, "plain_settings", str(tmp_path / "db.sqlite3"))
    code = (
        "import sys; sys.modules['celery'] = None; sys.modules['django_celery_beat'] = None\n"
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('token_schedule_hint', '--platform', 'all')\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", code],
        cwd=ROOT,
        env=project_env(
            settings_module=module, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)])
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "tokenops.tasks.purge_expired_tokens" in result.stdout
    assert "schtasks /Create" in result.stdout


def test_all_platforms_and_default_platform(manage):
    every = manage("token_schedule_hint", "--platform", "all")
    default = manage("token_schedule_hint")

    assert every.code == default.code == 0
    for heading in ("== Windows Task Scheduler", "== Linux / macOS: cron", "== Celery beat"):
        assert heading in every.out
    # The default is this machine's platform: Linux here.
    assert "== Linux / macOS: cron" in default.out
    assert "schtasks" not in default.out
    assert "Celery" not in default.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "24:00"], "argument --at: Invalid time '24:00': use 24-hour HH:MM"),
        (["--at", "3pm"], "argument --at: Invalid time '3pm'"),
        (["--every", "month"], "argument --every: invalid choice: 'month'"),
        (["--older-than", "5x"], "argument --older-than: Invalid duration '5x'"),
        (["--platform", "mac"], "argument --platform: invalid choice: 'mac'"),
        (["--day", "sunday"], "argument --day: invalid choice: 'sunday'"),
    ],
)
def test_bad_options_one_line_nonzero(manage, args, message):
    result = manage("token_schedule_hint", *args)

    assert result.code == 2
    assert result.out == ""
    assert result.err.count("\n") == 1
    assert result.err.startswith("manage.py token_schedule_hint: error: ")
    assert message in result.err


def test_ready_project_gets_no_readiness_warning(manage):
    result = manage("token_schedule_hint", "--platform", "linux")

    assert result.code == 0
    warnings = [line for line in result.err.splitlines() if line.startswith("Warning: ")]
    assert not [w for w in warnings if "migration" in w or "INSTALLED_APPS" in w], warnings
    assert all(line.startswith("Warning: ") for line in result.err.splitlines())


def test_root_from_the_current_directory_when_no_base_dir(manage, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with override_settings(BASE_DIR=None):
        result = manage("token_schedule_hint", "--platform", "linux")

    assert result.code == 0, result.err
    assert f"Project root: {tmp_path.resolve()}  (from the current directory" in result.out
    assert f"No manage.py in {tmp_path.resolve()}" in result.err
    assert shlex.split(line_starting(result.out, "0 3 ").split(None, 5)[5]) == [
        str(tmp_path.resolve() / "scripts" / "cleanup_tokens.sh")
    ]


def test_unknown_database_is_a_usage_error(manage):
    result = manage("token_schedule_hint", "--platform", "linux", "--database", "nope")

    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "manage.py token_schedule_hint: error: argument --database: Unknown database alias "
        "'nope' (configured: default, secondary).\n"
    )


@pytest.mark.slow
def test_warns_about_unapplied_migrations(tmp_path):
    """A fresh database: the hint says to migrate (and still prints the schedule)."""
    result = run_manage(
        "token_schedule_hint",
        "--platform",
        "linux",
        env=project_env(sqlite_url(tmp_path / "fresh.sqlite3")),
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert re.search(
        r"^Warning: \d+ migration\(s\) not applied on database 'default' \(.*token_blacklist.*\): "
        r"run 'python manage\.py migrate --database default'\.$",
        result.stderr,
        re.M,
    ), result.stderr
    assert "== Linux / macOS: cron" in result.stdout


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
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"manage.py token_schedule_hint: error: {flag} works with --platform celery only.\n"
    )
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
    done = run_manage(*INSTALL, env=project_env(sqlite_url(tmp_path / "new.sqlite3")))
    assert done.returncode == 1
    assert done.stderr.startswith(
        "CommandError: django-celery-beat is not migrated in database 'default' ("
    )
    assert done.stderr.endswith("run 'python manage.py migrate django_celery_beat'.\n")


def test_install_refuses_an_unknown_database_alias(manage):
    result = manage(*INSTALL, "--database", "nope")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "manage.py token_schedule_hint: error: argument --database: Unknown database alias "
        "'nope' (configured: default, secondary).\n"
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


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
def test_install_for_another_database_names_it_in_the_task(manage):
    result = manage(*INSTALL, "--database", "secondary", "--older-than", "9D")

    assert (result.code, result.err) == (0, "")
    assert result.out.endswith('kwargs {"older_than": "9d", "database": "secondary"}.\n')
    task = PeriodicTask.objects.using("default").get()
    assert json.loads(task.kwargs) == {"older_than": "9d", "database": "secondary"}


WRAPPER_NAMES = [
    "cleanup_tokens.bat",
    "cleanup_tokens.ps1",
    "register_task.ps1",
    "cleanup_tokens.sh",
]
WRITE = ["token_schedule_hint", "--write-scripts"]


@pytest.fixture
def own_root(tmp_path):
    """A project root of its own (BASE_DIR), with a manage.py and no scripts folder."""
    root = tmp_path / "own project (1) & co"
    root.mkdir()
    (root / "manage.py").write_text("# stand-in\n")
    with override_settings(BASE_DIR=root):
        yield root


def file_lines(out: str) -> dict[str, str]:
    """--write-scripts' lines, 'status: path  (notes)', as {file name: status}."""
    found = {}
    for line in out.splitlines():
        status, _, rest = line.partition(": ")
        if rest and status != "Next":
            found[PurePosixPath(rest.split("  (")[0]).name] = status
    return found


def test_write_scripts_writes_the_wrappers_then_the_hint_names_them(manage, own_root):
    before = manage("token_schedule_hint", "--platform", "linux")
    written = manage(*WRITE)
    after = manage("token_schedule_hint", "--platform", "linux")

    script = own_root / "scripts" / "cleanup_tokens.sh"
    assert f"Warning: {script} does not exist: run 'python manage.py token_schedule_hint " in (
        before.err
    )
    assert "--write-scripts' to write it." in before.err
    assert "copy tokenops' scripts/ folder" not in before.err
    assert (written.code, written.err) == (0, "")
    assert file_lines(written.out) == dict.fromkeys(WRAPPER_NAMES, "written")
    assert f"written: {script}  (runs {PYTHON})\n" in written.out
    assert written.out.endswith(
        "Next: 'python manage.py token_schedule_hint' prints the schedule lines that run them.\n"
    )
    assert sorted(p.name for p in (own_root / "scripts").iterdir()) == sorted(WRAPPER_NAMES)
    assert os.access(script, os.X_OK)
    # The hint now names the written script, which records this python: no warning at all.
    assert (after.code, after.err) == (0, "")
    cron = line_starting(after.out, "0 3 ")
    assert shlex.split(cron.split(None, 5)[5]) == [str(script)]
    assert f"cleanup_tokens.sh will use: {PYTHON}  (recorded by --write-scripts)" in after.out


def test_write_scripts_again_writes_nothing(manage, own_root):
    manage(*WRITE)
    folder = own_root / "scripts"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}

    again = manage(*WRITE)

    assert (again.code, again.err) == (0, "")
    assert file_lines(again.out) == dict.fromkeys(WRAPPER_NAMES, "up to date")
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before


def test_a_changed_file_is_kept_without_force_and_replaced_with_it(manage, own_root):
    manage(*WRITE)
    bat = own_root / "scripts" / "cleanup_tokens.bat"
    written = bat.read_bytes()
    edited = written.replace(b"exit /b %RC%", b"echo mine\r\nexit /b %RC%")
    bat.write_bytes(edited)

    kept = manage(*WRITE)
    forced = manage(*WRITE, "--force")

    assert kept.code == 1
    assert kept.err == (
        f"CommandError: Kept {bat}: changed since tokenops wrote it; run 'python manage.py "
        "token_schedule_hint --write-scripts --force' to replace it (your changes are lost).\n"
    )
    assert file_lines(kept.out) == {
        **dict.fromkeys(WRAPPER_NAMES, "up to date"),
        "cleanup_tokens.bat": "kept (changed by you)",
    }
    assert "Next:" not in kept.out
    assert (forced.code, forced.err) == (0, "")
    assert file_lines(forced.out)["cleanup_tokens.bat"] == (
        "written (--force replaced your changes)"
    )
    assert bat.read_bytes() == written


def test_an_unchanged_hand_copied_template_is_replaced(manage, own_root):
    """Before --write-scripts, README said to copy the scripts: such a copy is not 'changed'."""
    folder = own_root / "scripts"
    folder.mkdir()
    for name in WRAPPER_NAMES:
        (folder / name).write_bytes(
            (ROOT / "tokenops" / "scheduling" / "scripts" / name).read_bytes()
        )

    result = manage(*WRITE)

    assert (result.code, result.err) == (0, "")
    assert file_lines(result.out) == dict.fromkeys(WRAPPER_NAMES, "written")


def test_scripts_dir_elsewhere_records_the_root(manage, own_root, tmp_path):
    folder = tmp_path / "deploy" / "tokenops scripts"

    written = manage(*WRITE, "--scripts-dir", str(folder))
    hint = manage("token_schedule_hint", "--platform", "linux", "--scripts-dir", str(folder))

    assert written.code == 0, written.err
    sh = folder / "cleanup_tokens.sh"
    assert f"written: {sh}  (runs {PYTHON}; project root {own_root})\n" in written.out
    assert f"token_schedule_hint --scripts-dir {shlex.quote(str(folder))}' prints" in written.out
    assert (hint.code, hint.err) == (0, "")
    assert shlex.split(line_starting(hint.out, "0 3 ").split(None, 5)[5]) == [str(sh)]
    assert not (own_root / "scripts").exists()


@pytest.mark.parametrize(
    ("args", "code", "err"),
    [
        (
            ["--force"],
            2,
            "manage.py token_schedule_hint: error: --force works with --write-scripts only.\n",
        ),
        (
            ["--write-scripts", "--install"],
            2,
            "manage.py token_schedule_hint: error: argument --install: not allowed with "
            "argument --write-scripts\n",
        ),
    ],
)
def test_write_scripts_option_errors(manage, own_root, args, code, err):
    result = manage("token_schedule_hint", *args)

    assert (result.code, result.out, result.err) == (code, "", err)
    assert not (own_root / "scripts").exists()
