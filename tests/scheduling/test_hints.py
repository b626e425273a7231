"""tokenops.scheduling.hints: each ready-to-paste text, read back as its reader would."""

from __future__ import annotations

import getpass
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import powershell as ps
from tests.utils import ROOT, line_starting
from tests.windows import cmd_unescape, split_windows
from tokenops.scheduling.hints import (
    SYSTEMD_UNIT,
    WINDOWS_TASK,
    celery_hint,
    cmd_line,
    cmd_prompt_line,
    cron_line,
    header_text,
    linux_hint,
    register_scheduled_task_snippet,
    register_task_command,
    scheduling_hints,
    schtasks_create,
    systemd_service,
    systemd_timer,
    windows_hint,
)
from tokenops.scheduling.project import Project
from tokenops.scheduling.schedule import DAYS, WEEKDAYS, parse_schedule
from tokenops.scheduling.wrappers import write_project_wrappers


def windows_project(root: str) -> Project:
    return Project(
        root=PureWindowsPath(root), root_source="test", python="python.exe", in_venv=True,
        host="windows",
    )  # fmt: skip


def linux_project(root: str | Path) -> Project:
    return Project(
        root=PurePosixPath(root), root_source="test", python="/x/bin/python", in_venv=True,
        host="linux",
    )  # fmt: skip


def test_names():
    assert WINDOWS_TASK == "tokenops cleanup_tokens"
    assert SYSTEMD_UNIT == "tokenops-cleanup"


def test_a_windows_path_with_specials_is_pasteable():
    project = windows_project(r"C:\Users\Иван Петров\R&D (test)")
    line = schtasks_create(project, parse_schedule("23:59", "day"))

    assert "R^&D ^(test^)" in line
    argv = split_windows(cmd_unescape(line))
    assert split_windows(argv[5]) == [r"C:\Users\Иван Петров\R&D (test)\scripts\cleanup_tokens.bat"]
    assert argv[6:] == ["/SC", "DAILY", "/ST", "23:59", "/F"]


@pytest.mark.parametrize("day", DAYS)
def test_schtasks_weekly_on_each_day(day):
    project = windows_project(r"C:\srv\app")
    line = schtasks_create(project, parse_schedule("05:07", "week", day, database="secondary"))

    argv = split_windows(cmd_unescape(line))
    assert argv[:5] == ["schtasks", "/Create", "/TN", WINDOWS_TASK, "/TR"]
    assert split_windows(argv[5]) == [
        r"C:\srv\app\scripts\cleanup_tokens.bat",
        "--database",
        "secondary",
    ]
    assert argv[6:] == ["/SC", "WEEKLY", "/D", day.upper(), "/ST", "05:07", "/F"]


@given(st.lists(st.text(alphabet=' a\\"&()^é', max_size=8), max_size=4))
def test_cmd_prompt_line_round_trips(args):
    """cmd removes exactly the carets we add; the program then splits back to ``args``."""
    line = cmd_prompt_line(["prog", *args])
    assert split_windows(cmd_unescape(line)) == ["prog", *args]


@given(st.lists(st.text(alphabet=' a\\"&()^é\t', max_size=8), max_size=4))
def test_cmd_line_round_trips(args):
    assert split_windows(cmd_line(["prog", *args])) == ["prog", *args]


def test_register_task_command_passes_every_option():
    project = windows_project(r"C:\my (1) & co")
    schedule = parse_schedule("06:40", "week", "fri", "2w", "secondary")

    argv = split_windows(cmd_unescape(register_task_command(project, schedule)))

    assert argv == [
        "powershell", "-NoProfile", "-ExecutionPolicy", "Bypass",
        "-File", r"C:\my (1) & co\scripts\register_task.ps1",
        "-At", "06:40", "-Every", "Week", "-DayOfWeek", "Friday",
        "-OlderThan", "2w", "-Arguments", "--database secondary",
    ]  # fmt: skip


def test_hint_register_scheduled_task_snippet_parses():
    project = windows_project(r"C:\Users\Иван Петров\it's (my) project")
    snippet = register_scheduled_task_snippet(project, parse_schedule("03:15", "week", "fri", "7d"))
    root = ps.parse(snippet.encode("utf-8"))

    assert ps.syntax_errors(root) == []
    action = ps.commands(root, "New-ScheduledTaskAction")[0]
    argument = ps.single_quoted(action.value("-Argument"))
    bat = r"C:\Users\Иван Петров\it's (my) project\scripts\cleanup_tokens.bat"
    assert argument == f'/d /c ""{bat}" --older-than 7d"'
    assert ps.single_quoted(action.value("-WorkingDirectory")) == str(project.root)
    trigger = ps.commands(root, "New-ScheduledTaskTrigger")[0]
    assert (trigger.value("-Weekly"), trigger.value("-DaysOfWeek")) == ("", "Friday")
    assert ps.commands(root, "New-ScheduledTaskSettingsSet")[0].value("-StartWhenAvailable") == ""
    assert ps.commands(root, "Register-ScheduledTask")[0].value("-Force") == ""


def test_daily_snippet_has_a_daily_trigger_at_the_time():
    project = windows_project(r"C:\app")
    snippet = register_scheduled_task_snippet(project, parse_schedule("21:05"))
    root = ps.parse(snippet.encode("utf-8"))

    assert ps.syntax_errors(root) == []
    trigger = ps.commands(root, "New-ScheduledTaskTrigger")[0]
    assert (trigger.value("-Daily"), trigger.value("-Weekly")) == ("", None)
    assert ps.single_quoted(trigger.value("-At")) == "21:05"
    argument = ps.single_quoted(ps.commands(root, "New-ScheduledTaskAction")[0].value("-Argument"))
    assert argument == r'/d /c ""C:\app\scripts\cleanup_tokens.bat""'


def test_a_long_task_run_gets_the_schtasks_limit_note():
    short = windows_hint(windows_project(r"C:\app"), parse_schedule("03:00"))
    long = windows_hint(windows_project("C:\\" + "x" * 260), parse_schedule("03:00"))

    assert "/TR value is" not in short
    assert "schtasks accepts at most 261. Use register_task.ps1 below instead." in long


def test_cron_escapes_percent_and_quotes_spaces():
    project = linux_project("/srv/my app/100% ёж")
    text = linux_hint(project, parse_schedule("01:02", "day", older_than="2w"), user="svc")
    cron = line_starting(text, "2 1 ")
    command = cron.split(None, 5)[5]
    assert "\\%" in command
    assert shlex.split(command.replace("\\%", "%")) == [
        "/srv/my app/100% ёж/scripts/cleanup_tokens.sh",
        "--older-than",
        "2w",
    ]
    assert 'ExecStart="/srv/my app/100%% ёж/scripts/cleanup_tokens.sh" --older-than 2w' in text
    assert "User=svc" in text


@pytest.mark.parametrize("day", DAYS)
def test_cron_and_timer_on_each_weekday(day):
    schedule = parse_schedule("22:15", "week", day)

    cron = cron_line(linux_project("/srv/app"), schedule)
    timer = systemd_timer(schedule)

    assert cron == f"15 22 * * {WEEKDAYS[day][1]} /srv/app/scripts/cleanup_tokens.sh"
    assert f"OnCalendar={day.capitalize()} *-*-* 22:15:00" in timer.splitlines()
    assert f"Description=Run {SYSTEMD_UNIT}.service every {WEEKDAYS[day][0]} at 22:15" in timer


def test_systemd_service_runs_the_wrapper_as_the_user():
    service = systemd_service(
        linux_project("/srv/app"), parse_schedule("03:00", database="my db"), "svc"
    )

    lines = service.splitlines()
    assert "Type=oneshot" in lines
    assert "User=svc" in lines
    assert 'ExecStart=/srv/app/scripts/cleanup_tokens.sh --database "my db"' in lines


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="systemd units are Linux's")
def test_systemd_units_verify(tmp_path):
    """systemd-analyze reads the units as systemd would (a wrong quote fails: no such file)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd"
    root = tmp_path / "my app ёж"
    project = Project(root=root, root_source="test", python="python", in_venv=True, host="linux")
    # The script as --write-scripts writes it (its run bit set), which the unit starts.
    write_project_wrappers(project)
    schedule = parse_schedule("03:00", "week", "sun", "7d")
    (tmp_path / "tokenops-cleanup.service").write_text(
        systemd_service(project, schedule, getpass.getuser()) + "\n", encoding="utf-8"
    )
    (tmp_path / "tokenops-cleanup.timer").write_text(systemd_timer(schedule) + "\n")

    result = subprocess.run(
        [analyze, "verify", "tokenops-cleanup.service", "tokenops-cleanup.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "not executable" not in result.stderr
    calendar = subprocess.run(
        [analyze, "calendar", "Sun *-*-* 03:00:00"], capture_output=True, text=True, check=True
    )
    assert "Normalized form: Sun *-*-* 03:00:00" in calendar.stdout


def celery_entry(text: str) -> dict:
    snippet = text.split("Add to settings.py:\n")[1].split("Run a worker")[0]
    namespace: dict[str, object] = {}
    exec(compile(snippet.replace("\n    ", "\n").strip(), "snippet", "exec"), namespace)  # noqa: S102
    return namespace["CELERY_BEAT_SCHEDULE"]["tokenops-purge-expired-tokens"]


def test_celery_hint_snippet_runs_on_the_chosen_database():
    text = celery_hint(parse_schedule("01:20", "week", "sat", database="secondary"), "5d", app="x")

    entry = celery_entry(text)
    assert entry["task"] == "tokenops.tasks.purge_expired_tokens"
    assert entry["kwargs"] == {"older_than": "5d", "database": "secondary"}
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({1}, {20})
    assert entry["schedule"].day_of_week == {6}
    assert "    celery -A x worker -l info\n" in text


def test_header_names_the_wrappers_python(tmp_path):
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    project = Project(tmp_path, "test", "/x/bin/python", True, "linux")

    linux = header_text(project, ["linux", "celery"])
    windows = header_text(project, ["windows"])

    assert linux.splitlines() == [
        f"Project root: {tmp_path}  (from test)",
        "This python:  /x/bin/python  (a virtualenv)",
        f"cleanup_tokens.sh will use: {venv_python}",
    ]
    assert "cleanup_tokens.bat will use: python on PATH (no env, .venv or venv" in windows
    assert "these paths are this Linux machine's" in windows


@pytest.mark.django_db
def test_scheduling_hints_for_all_platforms():
    hints = scheduling_hints(parse_schedule("03:00"), "all")

    for heading in ("== Windows Task Scheduler", "== Linux / macOS: cron", "== Celery beat"):
        assert hints.text.count(heading) == 1
    assert hints.text.startswith(f"Project root: {ROOT}  (from settings.BASE_DIR)")
    assert not [w for w in hints.warnings if "migration" in w or "INSTALLED_APPS" in w]
