"""Ready-to-paste scheduling text (Task Scheduler, cron, systemd, Celery beat) for this project.

The text is filled in with the project's real paths, so a user pastes it and is done;
the warnings name what would make a scheduled run fail. Nothing here imports Celery:
the hint must work on a machine where Celery is not installed.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connections

from .checks import BLACKLIST_APP, first_line
from .durations import parse_duration
from .errors import TokenopsError

PLATFORMS = ("windows", "linux", "celery")
TASK_NAME = "tokenops cleanup_tokens"
CELERY_TASK = "tokenops.tasks.purge_expired_tokens"
SYSTEMD_UNIT = "tokenops-cleanup"
VENV_NAMES = ("env", ".venv", "venv")
LOG_NAME = "cleanup_tokens.log"
SCHTASKS_TR_LIMIT = 261
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
# cron counts Sunday as 0.
CRON_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
CMD_SPECIALS = frozenset("&|<>()^")
_AT = re.compile(r"([0-9]{1,2}):([0-9]{2})")


@dataclass(frozen=True)
class Schedule:
    """When to run and what token_purge options each run gets."""

    hour: int
    minute: int
    every: str = "day"
    day: str = "sun"
    older_than: str | None = None
    database: str = "default"

    @property
    def at(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"

    @property
    def purge_args(self) -> list[str]:
        args = ["--older-than", self.older_than] if self.older_than else []
        return [*args, "--database", self.database] if self.database != "default" else args

    @property
    def described(self) -> str:
        if self.every == "week":
            return f"every {DAY_NAMES[self.day]} at {self.at}"
        return f"every day at {self.at}"


@dataclass(frozen=True)
class Project:
    """Where the project is, and which python runs it, as the wrappers will see it."""

    root: PurePath
    root_source: str
    python: str
    in_venv: bool
    host: str

    def flavoured(self, platform: str) -> PurePath:
        """The root as a path of ``platform`` (it differs from the host's only in separators)."""
        if platform == "windows":
            return PureWindowsPath(self.root)
        return PurePosixPath(self.root.as_posix())

    def script(self, platform: str, name: str) -> PurePath:
        return self.flavoured(platform) / "scripts" / name

    def log(self, platform: str) -> PurePath:
        return self.flavoured(platform) / "logs" / LOG_NAME


def host_platform() -> str:
    return "windows" if sys.platform == "win32" else "linux"


def parse_at(text: str) -> tuple[int, int]:
    """``HH:MM`` (24-hour) as (hour, minute)."""
    match = _AT.fullmatch(text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise TokenopsError(
            f"Invalid time {text!r}: use 24-hour HH:MM, for example 03:00 or 23:30."
        )
    return int(match[1]), int(match[2])


def parse_schedule(
    at: str,
    every: str,
    day: str = "sun",
    older_than: str | None = None,
    database: str = "default",
) -> Schedule:
    """Validate the options; a problem is one TokenopsError line."""
    hour, minute = parse_at(at)
    if every not in ("day", "week"):
        raise TokenopsError(f"Invalid --every {every!r}: use day or week.")
    if day not in DAYS:
        raise TokenopsError(f"Invalid day {day!r}: use one of {', '.join(DAYS)}.")
    if older_than is not None:
        parse_duration(older_than)
        older_than = older_than.strip().lower()
    return Schedule(hour, minute, every, day, older_than, database)


def detect_project() -> Project:
    """The example project's root is where manage.py is: settings.BASE_DIR, else the cwd."""
    base_dir = getattr(settings, "BASE_DIR", None)
    if base_dir:
        root, source = Path(base_dir).resolve(), "settings.BASE_DIR"
    else:
        root, source = Path.cwd().resolve(), "the current directory (settings has no BASE_DIR)"
    return Project(
        root=root,
        root_source=source,
        python=sys.executable,
        in_venv=sys.prefix != sys.base_prefix,
        host=host_platform(),
    )


def wrapper_python(root: Path, platform: str) -> Path | None:
    """The python the wrapper scripts will pick: the first venv folder that has one."""
    relative = ("Scripts", "python.exe") if platform == "windows" else ("bin", "python")
    for name in VENV_NAMES:
        candidate = root.joinpath(name, *relative)
        if candidate.is_file():
            return candidate
    return None


def cmd_line(args: list[str]) -> str:
    """Quote ``args`` as Windows programs (schtasks, cmd) split their command line."""
    return subprocess.list2cmdline(args)


def cmd_prompt_line(args: list[str]) -> str:
    """``args`` as a line to paste into cmd.exe: Windows quoting, then cmd's own specials.

    cmd toggles its quote state at every ``"`` (it knows no ``\\"``), so a path with ``&``
    or parentheses inside an escaped quote is unquoted to cmd: those get a caret, which
    cmd removes before the program sees its command line.
    """
    out: list[str] = []
    quoted = False
    for char in cmd_line(args):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in CMD_SPECIALS:
            out.append("^")
        out.append(char)
    return "".join(out)


def schtasks_task_run(project: Project, schedule: Schedule) -> str:
    """The /TR value: what Task Scheduler starts (the .bat and its options)."""
    return bat_command(project, schedule)


def bat_command(project: Project, schedule: Schedule) -> str:
    """The .bat path, always quoted (cmd /c keeps a quoted first word intact), and its options."""
    bat = f'"{project.script("windows", "cleanup_tokens.bat")}"'
    return " ".join([bat, cmd_line(schedule.purge_args)]) if schedule.purge_args else bat


def schtasks_create(project: Project, schedule: Schedule) -> str:
    args = ["schtasks", "/Create", "/TN", TASK_NAME, "/TR", schtasks_task_run(project, schedule)]
    if schedule.every == "week":
        args += ["/SC", "WEEKLY", "/D", schedule.day.upper()]
    else:
        args += ["/SC", "DAILY"]
    args += ["/ST", schedule.at, "/F"]
    return cmd_prompt_line(args)


def ps_quote(text: str) -> str:
    """A PowerShell single-quoted string literal."""
    return "'" + text.replace("'", "''") + "'"


def register_task_command(project: Project, schedule: Schedule) -> str:
    script = str(project.script("windows", "register_task.ps1"))
    args = [
        "powershell",
        "-NoProfile",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
        script,
        "-At",
        schedule.at,
        "-Every",
        schedule.every.capitalize(),
    ]
    if schedule.every == "week":
        args += ["-DayOfWeek", DAY_NAMES[schedule.day]]
    if schedule.older_than:
        args += ["-OlderThan", schedule.older_than]
    if schedule.database != "default":
        args += ["-Arguments", f"--database {schedule.database}"]
    return cmd_prompt_line(args)


def register_scheduled_task_snippet(project: Project, schedule: Schedule) -> str:
    """The same task in plain PowerShell, for those who would rather not run a script."""
    root = str(project.flavoured("windows"))
    run = bat_command(project, schedule)
    if schedule.every == "week":
        trigger = f"New-ScheduledTaskTrigger -Weekly -DaysOfWeek {DAY_NAMES[schedule.day]}"
    else:
        trigger = "New-ScheduledTaskTrigger -Daily"
    return "\n".join(
        [
            f'$action = New-ScheduledTaskAction -Execute "$env:SystemRoot\\System32\\cmd.exe" '
            f"-Argument {ps_quote('/d /c ' + chr(34) + run + chr(34))} "
            f"-WorkingDirectory {ps_quote(root)}",
            f"$trigger = {trigger} -At {ps_quote(schedule.at)}",
            "$principal = New-ScheduledTaskPrincipal -UserId "
            "([System.Security.Principal.WindowsIdentity]::GetCurrent().Name) "
            "-LogonType Interactive -RunLevel Limited",
            "$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable "
            "-AllowStartIfOnBatteries -DontStopIfGoingOnBatteries",
            f"Register-ScheduledTask -TaskName {ps_quote(TASK_NAME)} -Action $action "
            "-Trigger $trigger -Principal $principal -Settings $settings -Force",
        ]
    )


def windows_hint(project: Project, schedule: Schedule) -> str:
    tr = schtasks_task_run(project, schedule)
    lines = [
        f"== Windows Task Scheduler: {schedule.described} (local time), as you ==",
        "",
        "Paste into Command Prompt (cmd.exe); /F replaces an existing task of that name:",
        "",
        "    " + schtasks_create(project, schedule),
        "",
    ]
    if len(tr) > SCHTASKS_TR_LIMIT:
        lines += [
            f"Note: the /TR value is {len(tr)} characters; schtasks accepts at most "
            f"{SCHTASKS_TR_LIMIT}. Use register_task.ps1 below instead.",
            "",
        ]
    lines += [
        "schtasks cannot ask for a missed run (machine asleep or off) to start later;",
        "register_task.ps1 does (StartWhenAvailable). It registers or updates the same task,",
        "as you, without administrator rights. Paste into Command Prompt (cmd.exe):",
        "",
        "    " + register_task_command(project, schedule),
        "",
        "    (remove it: the same with -Unregister alone)",
        "",
        "Or the same in plain PowerShell (Register-ScheduledTask):",
        "",
        *indent(register_scheduled_task_snippet(project, schedule)),
        "",
        "Check it, run it once now, and read the log:",
        "",
        f"    schtasks /Query /TN {cmd_line([TASK_NAME])} /V /FO LIST",
        f"    schtasks /Run /TN {cmd_line([TASK_NAME])}",
        f"    type {cmd_prompt_line([str(project.log('windows'))])}",
        "",
        f"Log: {project.log('windows')} (appended on every run; "
        "'Last Run Result' is token_purge's exit code, 0x0 = success).",
    ]
    return "\n".join(lines)


def cron_line(project: Project, schedule: Schedule) -> str:
    dow = str(CRON_DAYS[schedule.day]) if schedule.every == "week" else "*"
    command = shlex.join([str(project.script("linux", "cleanup_tokens.sh")), *schedule.purge_args])
    # cron turns an unescaped % into a newline.
    command = command.replace("%", "\\%")
    return f"{schedule.minute} {schedule.hour} * * {dow} {command}"


def systemd_quote(word: str) -> str:
    """One ExecStart= word: double-quoted when needed, % doubled (systemd specifiers)."""
    word = word.replace("%", "%%")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_on_calendar(schedule: Schedule) -> str:
    prefix = f"{schedule.day.capitalize()} " if schedule.every == "week" else ""
    return f"{prefix}*-*-* {schedule.at}:00"


def systemd_service(project: Project, schedule: Schedule, user: str) -> str:
    exec_start = " ".join(
        systemd_quote(word)
        for word in [str(project.script("linux", "cleanup_tokens.sh")), *schedule.purge_args]
    )
    return "\n".join(
        [
            "[Unit]",
            "Description=tokenops: purge expired simplejwt tokens (token_purge)",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"User={user}",
            f"ExecStart={exec_start}",
        ]
    )


def systemd_timer(schedule: Schedule) -> str:
    return "\n".join(
        [
            "[Unit]",
            f"Description=Run {SYSTEMD_UNIT}.service {schedule.described}",
            "",
            "[Timer]",
            f"OnCalendar={systemd_on_calendar(schedule)}",
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ]
    )


def linux_hint(project: Project, schedule: Schedule, user: str | None = None) -> str:
    user = user or current_user()
    service = systemd_service(project, schedule, user)
    timer = systemd_timer(schedule)
    unit_dir = "/etc/systemd/system"
    return "\n".join(
        [
            f"== Linux / macOS: cron, {schedule.described} (server time) ==",
            "",
            "Run 'crontab -e' as the user who owns the project and add this line:",
            "",
            "    " + cron_line(project, schedule),
            "",
            f"== Linux: systemd service + timer, {schedule.described} ==",
            "",
            "Paste into a shell (it writes both units, then starts the timer; a run missed",
            "while the machine was off starts at the next boot: Persistent=true):",
            "",
            f"sudo tee {unit_dir}/{SYSTEMD_UNIT}.service >/dev/null <<'EOF'",
            service,
            "EOF",
            f"sudo tee {unit_dir}/{SYSTEMD_UNIT}.timer >/dev/null <<'EOF'",
            timer,
            "EOF",
            "sudo systemctl daemon-reload",
            f"sudo systemctl enable --now {SYSTEMD_UNIT}.timer",
            "",
            "Check it, run it once now, and read the log:",
            "",
            f"    systemctl list-timers {SYSTEMD_UNIT}.timer",
            f"    sudo systemctl start {SYSTEMD_UNIT}.service",
            f"    tail -n 30 {shlex.quote(str(project.log('linux')))}",
            "",
            f"Log: {project.log('linux')} (appended on every run).",
        ]
    )


def celery_app_name() -> str:
    """The example project's package (celery -A ...), from ROOT_URLCONF or the settings module."""
    module = getattr(settings, "ROOT_URLCONF", "") or os.environ.get("DJANGO_SETTINGS_MODULE", "")
    return module.split(".")[0] or "your_project"


def celery_beat_snippet(schedule: Schedule, older_than: str) -> str:
    kwargs = {"older_than": older_than}
    if schedule.database != "default":
        kwargs["database"] = schedule.database
    day_of_week = f'"{schedule.day}"' if schedule.every == "week" else '"*"'
    return "\n".join(
        [
            "from celery.schedules import crontab",
            "",
            "CELERY_BEAT_SCHEDULE = {",
            '    "tokenops-purge-expired-tokens": {',
            f'        "task": "{CELERY_TASK}",',
            f'        "schedule": crontab(hour={schedule.hour}, minute={schedule.minute}, '
            f"day_of_week={day_of_week}),",
            f'        "kwargs": {json.dumps(kwargs)},',
            "    },",
            "}",
        ]
    )


def celery_hint(schedule: Schedule, older_than: str, app: str | None = None) -> str:
    app = app or celery_app_name()
    worker = f"celery -A {app} worker -l info"
    return "\n".join(
        [
            f"== Celery beat: {schedule.described} (CELERY_TIMEZONE, else TIME_ZONE) ==",
            "",
            f"Task: {CELERY_TASK}",
            "",
            "Add to settings.py:",
            "",
            *indent(celery_beat_snippet(schedule, older_than)),
            "",
            "Run a worker and beat (each in its own terminal or service):",
            "",
            f"    {worker}",
            f"    {worker} --pool=solo        (on Windows)",
            f"    celery -A {app} beat -l info "
            "--scheduler django_celery_beat.schedulers:DatabaseScheduler",
            "",
            "Or store the schedule in the database instead of settings:",
            "'python manage.py token_schedule_hint --platform celery --install' creates the",
            "PeriodicTask (django_celery_beat); --uninstall removes it.",
        ]
    )


def indent(text: str) -> list[str]:
    return ["    " + line if line else "" for line in text.split("\n")]


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "your-user"


def header_text(project: Project, platforms: list[str]) -> str:
    lines = [
        f"Project root: {project.root}  (from {project.root_source})",
        f"This python:  {project.python}"
        + ("  (a virtualenv)" if project.in_venv else "  (not a virtualenv)"),
    ]
    for platform in platforms:
        if platform == "celery":
            continue
        found = wrapper_python(Path(project.root), platform)
        script = "cleanup_tokens.bat" if platform == "windows" else "cleanup_tokens.sh"
        lines.append(
            f"{script} will use: {found}"
            if found
            else f"{script} will use: python on PATH (no env, .venv or venv with a python "
            "in the project root)"
        )
    if any(platform != project.host and platform != "celery" for platform in platforms):
        lines.append(
            f"Note: these paths are this {project.host.capitalize()} machine's; run "
            "token_schedule_hint on the machine that will run the schedule to get its paths."
        )
    return "\n".join(lines)


def readiness_warnings(project: Project, platforms: list[str], database: str) -> list[str]:
    """What would make a scheduled run fail, one line each (empty: nothing found)."""
    warnings: list[str] = []
    root = Path(project.root)
    if not (root / "manage.py").is_file():
        warnings.append(
            f"No manage.py in {root} (from {project.root_source}): the scripts run "
            "'python manage.py token_purge' from the parent of their scripts folder."
        )
    for platform in platforms:
        if platform == "celery":
            continue
        script = "cleanup_tokens.bat" if platform == "windows" else "cleanup_tokens.sh"
        if not (root / "scripts" / script).is_file():
            warnings.append(
                f"{root / 'scripts' / script} does not exist: copy tokenops' scripts/ folder "
                "into the project root."
            )
    if not apps.is_installed(BLACKLIST_APP):
        warnings.append(
            f"'{BLACKLIST_APP}' is not in INSTALLED_APPS: every scheduled token_purge "
            "would fail. Add it and run 'python manage.py migrate'."
        )
    warnings += migration_warnings(database)
    if not project.in_venv:
        warnings.append(
            f"Not running inside a virtualenv ({project.python}): the scheduled run uses "
            "whatever python is first on PATH, which may lack Django and tokenops."
        )
    wrappers = [p for p in platforms if p != "celery"]
    if project.in_venv and any(wrapper_python(root, p) is None for p in wrappers):
        warnings.append(
            f"Your virtualenv ({sys.prefix}) is not env, .venv or venv in {root}: "
            "the scripts will not find it and use python on PATH instead; create the "
            "venv there (python -m venv .venv) or link it."
        )
    return warnings


def migration_warnings(database: str) -> list[str]:
    if database not in connections:
        known = ", ".join(sorted(connections.settings)) or "none"
        return [f"Unknown database alias {database!r} (configured: {known})."]
    from django.db.migrations.executor import MigrationExecutor

    try:
        connection = connections[database]
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return [f"Cannot reach database {database!r}: {first_line(exc)}"]
    if not plan:
        return []
    pending = sorted({migration.app_label for migration, _ in plan})
    return [
        f"{len(plan)} migration(s) not applied on database {database!r} "
        f"({', '.join(pending)}): run 'python manage.py migrate --database {database}'."
    ]
