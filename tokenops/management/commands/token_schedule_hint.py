from datetime import time
from typing import Any

from django.core.management.base import CommandParser

from ...app_settings import get_settings
from ...durations import parse_duration
from ...errors import TokenopsError
from ...schedule_hints import (
    DAYS,
    PLATFORMS,
    Schedule,
    celery_hint,
    detect_project,
    header_text,
    host_platform,
    linux_hint,
    parse_at,
    parse_schedule,
    readiness_warnings,
    windows_hint,
)
from ..base import TokenopsCommand, argument_type

at_arg = argument_type(parse_at, keep_text=True)
duration_text_arg = argument_type(parse_duration, keep_text=True)


class Command(TokenopsCommand):
    help = (
        "Print ready-to-paste scheduling text for this project (Windows Task Scheduler, "
        "cron and systemd, Celery beat) with its real paths, and warn about what would make "
        "a scheduled token_purge fail. Changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--platform",
            choices=[*PLATFORMS, "all"],
            default=host_platform(),
            help="What to print for (default: this machine's, %(default)s).",
        )
        parser.add_argument(
            "--at",
            type=at_arg,
            default="03:00",
            metavar="HH:MM",
            help="Time of day, 24-hour (default: %(default)s).",
        )
        parser.add_argument(
            "--every",
            choices=["day", "week"],
            default="day",
            help="How often (default: %(default)s).",
        )
        parser.add_argument(
            "--day",
            choices=DAYS,
            default="sun",
            help="Day of a weekly run (default: %(default)s).",
        )
        parser.add_argument(
            "--older-than",
            type=duration_text_arg,
            metavar="DURATION",
            help="token_purge --older-than for each run (default: none, so each run "
            "uses TOKENOPS['OLDER_THAN']).",
        )
        self.add_database_argument(parser)
        beat = parser.add_mutually_exclusive_group()
        beat.add_argument(
            "--install",
            action="store_true",
            help="With --platform celery: create or update the django-celery-beat PeriodicTask "
            "that runs the purge on this schedule (running it again changes nothing).",
        )
        beat.add_argument(
            "--uninstall",
            action="store_true",
            help="With --platform celery: remove that PeriodicTask.",
        )

    def handle(
        self,
        *,
        platform: str,
        at: str,
        every: str,
        day: str,
        older_than: str | None,
        database: str,
        install: bool,
        uninstall: bool,
        **options: Any,
    ) -> None:
        schedule = parse_schedule(at, every, day, older_than, database)
        if install or uninstall:
            if platform != "celery":
                flag = "--install" if install else "--uninstall"
                raise TokenopsError(f"{flag} works with --platform celery only.")
            self.change_beat_schedule(schedule, database, install=install)
            return
        platforms = list(PLATFORMS) if platform == "all" else [platform]
        project = detect_project()
        sections = [header_text(project, platforms)]
        for name in platforms:
            if name == "windows":
                sections.append(windows_hint(project, schedule))
            elif name == "linux":
                sections.append(linux_hint(project, schedule))
            else:
                sections.append(celery_hint(schedule, older_than or get_settings().older_than_text))
        self.stdout.write("\n\n".join(sections))
        for warning in readiness_warnings(project, platforms, database):
            self.stderr.write(f"Warning: {warning}")

    def change_beat_schedule(self, schedule: Schedule, database: str, *, install: bool) -> None:
        from ...beat import install_periodic_task, uninstall_periodic_task

        if install:
            result = install_periodic_task(
                at=time(schedule.hour, schedule.minute),
                every=schedule.every,
                day=schedule.day,
                older_than=schedule.older_than or get_settings().older_than_text,
                database=database,
            )
        else:
            result = uninstall_periodic_task()
        self.stdout.write(result.message())
