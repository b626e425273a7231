from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ...console import login_name, terminal_progress, terminate_as_interrupt
from ...errors import PurgeSkipped
from ...operations import PurgeRequest, run_purge
from ...rendering import render_purge
from ..base import INTERRUPTED, TokenopsCommand, positive_int, seconds_arg

# EX_TEMPFAIL (sysexits.h): another purge holds the lock; try again later.
SKIPPED = 75


class Command(TokenopsCommand):
    help = gettext_lazy(
        "Delete simplejwt token rows that no setting of this project can still accept "
        "(expiry + max(--older-than, LEEWAY, sliding window)), blacklist rows first, in short "
        "batches. Safe to interrupt: run it again to finish."
    )
    interrupted_at_start = gettext_lazy(
        "Interrupted before the purge started: nothing was deleted."
    )
    interrupted_in_output = gettext_lazy(
        "Interrupted while writing the result: the purge finished and its history row says "
        "so, but the result was not written in full."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=_("Show what would be deleted and write nothing."),
        )
        self.add_older_than_argument(parser)
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            metavar="N",
            help=_(
                "Rows per transaction (default: TOKENOPS['BATCH_SIZE'], or, when that is "
                "None, sized so each transaction takes about TOKENOPS['BATCH_SECONDS']: "
                "0.5 s, 0.25 s on MySQL/MariaDB, and on SQLite 1.5 s while no other "
                "connection writes)."
            ),
        )
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help=_("Output format (default: table)."),
        )
        parser.add_argument(
            "--max-seconds",
            type=seconds_arg,
            metavar="N",
            help=_(
                "Time budget: stop after the batch during which N seconds ran out and say "
                "what is left; the next run continues (default: TOKENOPS['MAX_SECONDS'], "
                "which defaults to no budget)."
            ),
        )
        self.add_database_argument(parser)
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help=_("Never draw a progress bar (it is drawn only when stderr is a terminal)."),
        )

    def handle(
        self,
        *,
        dry_run: bool,
        older_than: timedelta | None,
        batch_size: int | None,
        max_seconds: float | None,
        format: str,
        database: str,
        no_progress: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        request = PurgeRequest(
            database,
            older_than=older_than,
            batch_size=batch_size,
            dry_run=dry_run,
            started_by=login_name(),
            max_seconds=max_seconds,
        )
        progress = terminal_progress(self.stderr._out, enabled=not no_progress and verbosity > 0)
        try:
            with terminate_as_interrupt():
                result = run_purge(
                    request,
                    progress=progress,
                    warn=lambda message: self.stderr.write(
                        _("Warning: %(message)s") % {"message": message}
                    ),
                )
        except PurgeSkipped as exc:
            raise CommandError(str(exc), returncode=SKIPPED) from None
        except KeyboardInterrupt:
            raise CommandError(
                _(
                    "Interrupted: every finished batch is committed and the tables are "
                    "consistent; run token_purge again to finish."
                ),
                returncode=INTERRUPTED,
            ) from None
        self.begin_output()
        if format == "json" or verbosity > 0:
            self.stdout.write(render_purge(result, format))
