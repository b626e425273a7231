"""Ready-to-paste scheduling text (Task Scheduler, cron, systemd, Celery beat) for a project.

The text is filled in with the project's real paths, so a user pastes it and is done;
the warnings name what would make a scheduled run fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from ..app_settings import get_settings
from ..console import login_name
from .project import (
    PLATFORMS,
    WRAPPERS,
    Project,
    detect_project,
    readiness_warnings,
    wrapper_interpreter,
)
from .schedule import CELERY_TASK, Schedule

WINDOWS_TASK = "tokenops cleanup_tokens"
SYSTEMD_UNIT = "tokenops-cleanup"
SCHTASKS_TR_LIMIT = 261
CMD_SPECIALS = frozenset("&|<>()^")


@dataclass(frozen=True)
class Hints:
    text: str
    warnings: list[str]


def scheduling_hints(
    schedule: Schedule, platform: str, scripts_dir: str | Path | None = None
) -> Hints:
    """The texts for ``platform`` ("all" for every one), and what would make a run fail.

    ``scripts_dir``: where the wrappers are (default: scripts/ in the project root).
    """
    platforms = list(PLATFORMS) if platform == "all" else [platform]
    project = detect_project(scripts_dir)
    sections = [header_text(project, platforms)]
    for name in platforms:
        if name == "windows":
            sections.append(windows_hint(project, schedule))
        elif name == "linux":
            sections.append(linux_hint(project, schedule))
        else:
            older_than = schedule.older_than or get_settings().older_than_text
            sections.append(celery_hint(schedule, older_than))
    sections.append(sweep_hint(get_settings().sweep_probability))
    return Hints("\n\n".join(sections), readiness_warnings(project, platforms, schedule.database))


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
    args = ["schtasks", "/Create", "/TN", WINDOWS_TASK, "/TR", schtasks_task_run(project, schedule)]
    if schedule.weekly:
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
    if schedule.weekly:
        args += ["-DayOfWeek", schedule.day_name]
    if schedule.older_than:
        args += ["-OlderThan", schedule.older_than]
    if schedule.database != "default":
        args += ["-Arguments", f"--database {schedule.database}"]
    return cmd_prompt_line(args)


def register_scheduled_task_snippet(project: Project, schedule: Schedule) -> str:
    """The same task in plain PowerShell, for those who would rather not run a script."""
    root = str(project.flavoured("windows"))
    run = bat_command(project, schedule)
    if schedule.weekly:
        trigger = f"New-ScheduledTaskTrigger -Weekly -DaysOfWeek {schedule.day_name}"
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
            f"Register-ScheduledTask -TaskName {ps_quote(WINDOWS_TASK)} -Action $action "
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
        f"    schtasks /Query /TN {cmd_line([WINDOWS_TASK])} /V /FO LIST",
        f"    schtasks /Run /TN {cmd_line([WINDOWS_TASK])}",
        f"    type {cmd_prompt_line([str(project.log('windows'))])}",
        "",
        f"Log: {project.log('windows')} (appended on every run; "
        "'Last Run Result' is token_purge's exit code, 0x0 = success).",
    ]
    return "\n".join(lines)


def cron_line(project: Project, schedule: Schedule) -> str:
    command = shlex.join([str(project.script("linux", "cleanup_tokens.sh")), *schedule.purge_args])
    # cron turns an unescaped % into a newline.
    command = command.replace("%", "\\%")
    return f"{schedule.crontab} {command}"


def systemd_quote(word: str) -> str:
    """One ExecStart= word: double-quoted when needed, % doubled (systemd specifiers)."""
    word = word.replace("%", "%%")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_on_calendar(schedule: Schedule) -> str:
    prefix = f"{schedule.day.capitalize()} " if schedule.weekly else ""
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
    user = user or login_name() or "your-user"
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
    day_of_week = f'"{schedule.day}"' if schedule.weekly else '"*"'
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


def sweep_hint(probability: float) -> str:
    """The option that needs no scheduler at all, with its trade-off."""
    state = f"on (SWEEP_PROBABILITY {probability:g})" if probability else "off"
    return "\n".join(
        [
            "== No scheduler at all: in-app sweeps ==",
            "",
            "Each token simplejwt issues (login, refresh) may also delete a few purgeable rows",
            "once the request's response has gone out (the client does not wait), with the",
            "same safe cutoff as token_purge. In settings.py:",
            "",
            '    TOKENOPS = {..., "SWEEP_PROBABILITY": 0.1, "SWEEP_MAX_ROWS": 100}',
            "",
            "Trade-off: the worker that sweeps stays busy 5-20 ms longer (README), and",
            "sweeps look only at the oldest rows: run token_purge once for a large",
            "backlog, and keep a schedule as well if your token lifetimes differ widely.",
            f"In-app sweeps are {state} here.",
        ]
    )


def indent(text: str) -> list[str]:
    return ["    " + line if line else "" for line in text.split("\n")]


def header_text(project: Project, platforms: list[str]) -> str:
    lines = [
        f"Project root: {project.root}  (from {project.root_source})",
        f"This python:  {project.python}"
        + ("  (a virtualenv)" if project.in_venv else "  (not a virtualenv)"),
    ]
    for platform in platforms:
        if platform == "celery":
            continue
        lines.append(
            f"{WRAPPERS[platform]} will use: {wrapper_interpreter(project, platform).described()}"
        )
    if any(platform != project.host and platform != "celery" for platform in platforms):
        lines.append(
            f"Note: these paths are this {project.host.capitalize()} machine's; run "
            "token_schedule_hint on the machine that will run the schedule to get its paths."
        )
    return "\n".join(lines)
