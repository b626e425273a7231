from typing import Any

from django.core.management.base import CommandError, CommandParser

from ...app_settings import get_settings
from ...progress import terminal_progress
from ...purging import run_purge
from ...rendering import render_purge
from ..base import TokenopsCommand, positive_int

INTERRUPTED = 130


class Command(TokenopsCommand):
    help = (
        "Delete simplejwt token rows that no setting of this project can still accept "
        "(expiry + max(--older-than, LEEWAY, sliding window)), blacklist rows first, in short "
        "batches. Safe to interrupt: run it again to finish."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show what would be deleted and write nothing.",
        )
        self.add_older_than_argument(parser)
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            metavar="N",
            help="Rows per transaction (default: sized so each transaction takes about "
            "TOKENOPS['BATCH_SECONDS'], 0.5 s).",
        )
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help="Output format (default: table).",
        )
        self.add_database_argument(parser)
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="Never draw a progress bar (it is drawn only when stderr is a terminal).",
        )

    def handle(
        self,
        *,
        dry_run: bool,
        older_than: Any,
        batch_size: int | None,
        format: str,
        database: str,
        no_progress: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        conf = get_settings()
        progress = terminal_progress(self.stderr._out, enabled=not no_progress and verbosity > 0)
        try:
            result = run_purge(
                database,
                self.older_than_or_default(older_than),
                dry_run=dry_run,
                batch_size=batch_size or conf.batch_size,
                batch_seconds=conf.batch_seconds,
                progress=progress,
            )
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted: every finished batch is committed and the tables are "
                "consistent; run token_purge again to finish.",
                returncode=INTERRUPTED,
            ) from None
        if format == "json" or verbosity > 0:
            self.stdout.write(render_purge(result, format))
