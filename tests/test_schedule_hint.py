"""token_schedule_hint: real paths in ready-to-paste text, parsed back field by field."""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import write_plain_settings
from tests.scheduling_helpers import REPO, split_windows
from tokenops.schedule_hints import (
    Project,
    cmd_prompt_line,
    linux_hint,
    parse_schedule,
    readiness_warnings,
    schtasks_create,
    systemd_service,
    systemd_timer,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(settings.BASE_DIR).resolve()
WIN_ROOT = PureWindowsPath(ROOT)


def line_starting(text: str, prefix: str) -> str:
    matches = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    assert len(matches) == 1, (prefix, matches)
    return matches[0]


def cmd_unescape(line: str) -> str:
    """What cmd.exe hands a program for a pasted line: carets outside quotes removed."""
    out, quoted, i = [], False, 0
    while i < len(line):
        char = line[i]
        if char == '"':
            quoted = not quoted
        elif char == "^" and not quoted and i + 1 < len(line):
            i += 1
            char = line[i]
        out.append(char)
        i += 1
    return "".join(out)


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


def test_a_windows_path_with_specials_is_pasteable():
    project = Project(
        root=PureWindowsPath(r"C:\Users\Иван Петров\R&D (test)"),
        root_source="test",
        python=r"C:\x\python.exe",
        in_venv=True,
        host="windows",
    )
    line = schtasks_create(project, parse_schedule("23:59", "day"))

    assert "R^&D ^(test^)" in line
    argv = split_windows(cmd_unescape(line))
    assert split_windows(argv[5]) == [r"C:\Users\Иван Петров\R&D (test)\scripts\cleanup_tokens.bat"]
    assert argv[6:] == ["/SC", "DAILY", "/ST", "23:59", "/F"]


@given(st.lists(st.text(alphabet=' a\\"&()^é', max_size=8), max_size=4))
def test_cmd_prompt_line_round_trips(args):
    """cmd removes exactly the carets we add; the program then splits back to ``args``."""
    line = cmd_prompt_line(["prog", *args])
    assert split_windows(cmd_unescape(line)) == ["prog", *args]


def test_linux_crontab_line(manage):
    result = manage(
        "token_schedule_hint", "--platform", "linux", "--at", "23:05", "--every", "week",
        "--day", "sat", "--older-than", "1w2d",
    )  # fmt: skip

    assert result.code == 0, result.err
    cron = line_starting(result.out, "5 23 ")
    minute, hour, dom, month, dow, command = cron.split(None, 5)
    assert (minute, hour, dom, month, dow) == ("5", "23", "*", "*", "6")
    script = ROOT / "scripts" / "cleanup_tokens.sh"
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


def test_cron_escapes_percent_and_quotes_spaces():
    project = Project(
        root=PurePosixPath("/srv/my app/100% ёж"),
        root_source="test",
        python="/srv/x/bin/python",
        in_venv=True,
        host="linux",
    )
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


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="systemd units are Linux's")
def test_systemd_units_verify(tmp_path):
    """systemd-analyze reads the units as systemd would (a wrong quote fails: no such file)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd"
    root = tmp_path / "my app ёж"
    (root / "scripts").mkdir(parents=True)
    script = root / "scripts" / "cleanup_tokens.sh"
    shutil.copy2(REPO / "scripts" / "cleanup_tokens.sh", script)
    project = Project(root=root, root_source="test", python="python", in_venv=True, host="linux")
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
        [sys.executable, "-c", code],
        cwd=REPO,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": module,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        },
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


def test_warns_when_blacklist_app_missing():
    apps_without = [a for a in settings.INSTALLED_APPS if not a.endswith("token_blacklist")]
    project = Project(root=ROOT, root_source="test", python="p", in_venv=True, host="linux")
    with override_settings(INSTALLED_APPS=apps_without):
        warnings = readiness_warnings(project, ["linux"], "default")
    assert any(
        "'rest_framework_simplejwt.token_blacklist' is not in INSTALLED_APPS" in w for w in warnings
    ), warnings


def test_warns_outside_a_virtualenv_and_when_scripts_miss_the_venv(tmp_path):
    (tmp_path / "manage.py").write_text("")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "cleanup_tokens.sh").write_text("")
    outside = Project(
        root=tmp_path, root_source="test", python="/usr/bin/python3", in_venv=False, host="linux"
    )
    inside = Project(
        root=tmp_path, root_source="test", python="/x/bin/python", in_venv=True, host="linux"
    )

    out_warnings = readiness_warnings(outside, ["linux"], "default")
    in_warnings = readiness_warnings(inside, ["linux"], "default")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    found_warnings = readiness_warnings(inside, ["linux"], "default")

    assert any(
        w.startswith("Not running inside a virtualenv (/usr/bin/python3)") for w in out_warnings
    )
    assert any("the scripts will not find it" in w for w in in_warnings)
    assert not any("virtualenv" in w for w in found_warnings), found_warnings


def test_warns_about_missing_manage_py_and_scripts(tmp_path):
    project = Project(root=tmp_path, root_source="test", python="p", in_venv=True, host="linux")

    warnings = readiness_warnings(project, ["windows", "linux"], "default")

    assert any(w.startswith(f"No manage.py in {tmp_path}") for w in warnings)
    assert any("cleanup_tokens.bat does not exist" in w for w in warnings)
    assert any("cleanup_tokens.sh does not exist" in w for w in warnings)


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


def test_unknown_database_is_a_warning(manage):
    result = manage("token_schedule_hint", "--platform", "linux", "--database", "nope")

    assert result.code == 0
    assert "Warning: Unknown database alias 'nope'" in result.err


@pytest.mark.slow
def test_warns_about_unapplied_migrations(tmp_path):
    """A fresh database: the hint says to migrate (and still prints the schedule)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "my_bathhouse_backend.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "token_schedule_hint", "--platform", "linux"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert re.search(
        r"^Warning: \d+ migration\(s\) not applied on database 'default' \(.*token_blacklist.*\): "
        r"run 'python manage\.py migrate --database default'\.$",
        result.stderr,
        re.M,
    ), result.stderr
    assert "== Linux / macOS: cron" in result.stdout
