from datetime import timedelta
from typing import Any

from django.core.management.base import CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ...operations import ReportRequest, build_report
from ...rendering import overdue_warning, render_report
from ..base import TokenopsCommand, count_arg


class Command(TokenopsCommand):
    help = gettext_lazy(
        "Show how many simplejwt tokens are outstanding, blacklisted, expired and safe to "
        "purge, by age and by user. Reads only; counts run in the database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_older_than_argument(parser)
        parser.add_argument(
            "--top",
            type=count_arg,
            metavar="N",
            help=_(
                "List the N users with the most outstanding tokens "
                "(default: TOKENOPS['REPORT_TOP'], which defaults to 10; 0 hides the list)."
            ),
        )
        parser.add_argument(
            "--format",
            choices=["table", "json", "csv"],
            default="table",
            help=_("Output format (default: table)."),
        )
        self.add_database_argument(parser)

    def handle(
        self,
        *,
        older_than: timedelta | None,
        top: int | None,
        format: str,
        database: str,
        **options: Any,
    ) -> None:
        report = build_report(ReportRequest(database, older_than=older_than, top=top))
        self.stdout.write(render_report(report, format))
        if report.history is not None and report.history.overdue:
            self.stderr.write(overdue_warning(report.history))
