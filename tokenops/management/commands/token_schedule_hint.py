from typing import Any

from django.core.management.base import CommandParser

from ...durations import parse_duration
from ...errors import TokenopsError
from ...scheduling.hints import scheduling_hints
from ...scheduling.project import PLATFORMS, detect_project, host_platform
from ...scheduling.schedule import DAYS, EVERY, parse_at, parse_schedule
from ...scheduling.wrappers import write_project_wrappers
from ..base import TokenopsCommand, argument_type

at_arg = argument_type(parse_at, keep_text=True)
duration_text_arg = argument_type(parse_duration, keep_text=True)


class Command(TokenopsCommand):
    help = (
        "Print ready-to-paste scheduling text for this project (Windows Task Scheduler, "
        "cron and systemd, Celery beat) with its real paths, and warn about what would make "
        "a scheduled token_purge fail. Changes nothing without --write-scripts, --install "
        "or --uninstall."
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
            choices=EVERY,
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
        beat.add_argument(
            "--write-scripts",
            action="store_true",
            help="Write the wrapper scripts (cleanup_tokens.bat, .ps1, .sh, register_task.ps1) "
            "into scripts/ in the project root, recording this python in them; running it "
            "again writes only what changed, and keeps a file you edited.",
        )
        parser.add_argument(
            "--scripts-dir",
            metavar="DIR",
            help="Where the wrapper scripts are, or --write-scripts writes them "
            "(default: scripts/ in the project root).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="With --write-scripts: replace wrapper scripts you changed.",
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
        write_scripts: bool,
        scripts_dir: str | None,
        force: bool,
        **options: Any,
    ) -> None:
        schedule = parse_schedule(at, every, day, older_than, database)
        if force and not write_scripts:
            self.usage_error("--force works with --write-scripts only.")
        if write_scripts:
            written = write_project_wrappers(detect_project(scripts_dir), force=force)
            for line in written.lines():
                self.stdout.write(line)
            error = written.error()
            if error:
                raise TokenopsError(error)
            self.stdout.write(written.next_step())
            return
        if install or uninstall:
            if platform != "celery":
                flag = "--install" if install else "--uninstall"
                self.usage_error(f"{flag} works with --platform celery only.")
            from ...scheduling.beat import install_periodic_task, uninstall_periodic_task

            result = install_periodic_task(schedule) if install else uninstall_periodic_task()
            self.stdout.write(result.message())
            return
        hints = scheduling_hints(schedule, platform, scripts_dir)
        self.stdout.write(hints.text)
        for warning in hints.warnings:
            self.stderr.write(f"Warning: {warning}")
