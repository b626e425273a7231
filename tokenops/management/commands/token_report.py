from datetime import timedelta
from typing import Any

from django.core.management.base import CommandParser
from django.db import DEFAULT_DB_ALIAS
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ...operations import ReportRequest, build_metrics, build_report, check_health
from ...rendering import check_line, overdue_warning, render_openmetrics, render_report
from ..base import TokenopsCommand, count_arg

# --check: healthy, or a person should look (1 stays "error", as for every command).
HEALTHY = 0
ATTENTION = 4


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
            choices=["table", "json", "csv", "openmetrics"],
            default="table",
            help=_(
                "Output format (default: table); openmetrics is the Prometheus/OpenMetrics "
                "text format, for node_exporter's textfile collector."
            ),
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help=_(
                "Print one line and exit 0 when healthy, 4 when a purge is overdue or the "
                "latest purge failed or was interrupted (1 on error). Reads the token "
                "tables as little as it can."
            ),
        )
        self.add_database_argument(parser, none_default=True)

    def handle(
        self,
        *,
        older_than: timedelta | None,
        top: int | None,
        format: str,
        database: str,
        check: bool,
        **options: Any,
    ) -> None:
        # --database defaults to None here so that openmetrics labels only a database asked for.
        given_database = database
        database = database or DEFAULT_DB_ALIAS
        if check:
            health = check_health(ReportRequest(database, older_than=older_than, top=0))
            self.begin_output()
            self.stdout.write(check_line(health))
            if health.attention:
                self.stdout.flush()
                # SystemExit, not CommandError: the line is an answer, not an error.
                raise SystemExit(ATTENTION)
            return
        if format == "openmetrics":
            metrics = build_metrics(ReportRequest(database, older_than=older_than, top=0))
            label = database if given_database else None
            self.begin_output()
            self.stdout.write(render_openmetrics(metrics, database_label=label))
            return
        report = build_report(ReportRequest(database, older_than=older_than, top=top))
        self.begin_output()
        self.stdout.write(render_report(report, format))
        if report.history is not None and report.history.overdue:
            self.stderr.write(overdue_warning(report.history))
