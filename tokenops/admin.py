"""The admin's "Token hygiene" page (figures, chart, history, dry run, purge) and PurgeRun.

Viewing the page needs ``tokenops.view_token_hygiene``; purging needs
``tokenops.run_purge`` as well. Purges go through ``run_purge`` like the command.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from .app_settings import get_settings
from .chart import expiry_chart
from .checks import first_line
from .counting import AGE_BUCKETS
from .errors import TokenopsError
from .history import recent_runs, stale_before
from .models import PurgeRun, TokenHygiene
from .purging import PurgeResult, run_purge
from .rendering import cutoff_line, last_purge_line, overdue_warning, purge_headline, user_label
from .reporting import Report, build_report

VIEW_PERMISSION = "tokenops.view_token_hygiene"
PURGE_PERMISSION = "tokenops.run_purge"


def with_shown_outcome(runs: list[PurgeRun]) -> list[PurgeRun]:
    """Label each run with its real outcome (a silent "running" row is interrupted)."""
    try:
        limit = stale_before(datetime.now(dt_timezone.utc))
    except TokenopsError:
        limit = None
    for run in runs:
        outcome = run.outcome if limit is None else run.outcome_at(limit)
        run.shown_outcome = PurgeRun.Outcome(outcome).label
        run.shown_class = outcome
    return runs


class ReadOnlyAdmin(admin.ModelAdmin):
    """Nothing here is added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PurgeRun)
class PurgeRunAdmin(ReadOnlyAdmin):
    """The history, read-only: rows are written by purges, never by hand."""

    list_display = (
        "started_at",
        "outcome_shown",
        "dry_run",
        "trigger",
        "started_by",
        "database",
        "outstanding_deleted",
        "blacklisted_deleted",
        "finished_at",
    )
    list_filter = ("outcome", "dry_run", "trigger", "database")
    date_hierarchy = "started_at"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm(VIEW_PERMISSION)

    @admin.display(description=gettext_lazy("outcome"), ordering="outcome")
    def outcome_shown(self, run: PurgeRun) -> str:
        return with_shown_outcome([run])[0].shown_outcome


@admin.register(TokenHygiene)
class TokenHygieneAdmin(ReadOnlyAdmin):
    """No rows: the changelist URL is the page, so the admin index links to it."""

    using = DEFAULT_DB_ALIAS

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW_PERMISSION)

    def get_urls(self) -> list:
        def wrap(view):
            # Each purge batch commits on its own, even under ATOMIC_REQUESTS.
            return transaction.non_atomic_requests(self.admin_site.admin_view(view))

        return [
            path("", wrap(self.hygiene_view), name="tokenops_tokenhygiene_changelist"),
            path("purge/", wrap(self.purge_view), name="tokenops_tokenhygiene_purge"),
        ]

    def hygiene_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        dry_run: PurgeResult | None = None
        if request.method == "POST":
            if request.POST.get("action") != "dry_run":
                return HttpResponseRedirect(request.path)
            dry_run = self._purge(request, dry_run=True)
        return TemplateResponse(
            request,
            "tokenops/admin/token_hygiene.html",
            self._context(request, dry_run=dry_run),
        )

    def purge_view(self, request: HttpRequest) -> HttpResponse:
        """A confirmation page on GET; the purge itself on a confirmed POST."""
        if not (self.has_view_permission(request) and request.user.has_perm(PURGE_PERMISSION)):
            raise PermissionDenied
        page = reverse("admin:tokenops_tokenhygiene_changelist", current_app=self.admin_site.name)
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            result = self._purge(request, dry_run=False)
            if result is not None:
                messages.success(request, purge_headline(result))
            return HttpResponseRedirect(page)
        report, error = self._report()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "opts": self.model._meta,
            "report": report,
            "error": error,
            "cutoff_line": cutoff_line(report.cutoff) if report else "",
            "page_url": page,
        }
        return TemplateResponse(request, "tokenops/admin/purge_confirmation.html", context)

    def _purge(self, request: HttpRequest, *, dry_run: bool) -> PurgeResult | None:
        conf = get_settings()
        try:
            return run_purge(
                self.using,
                conf.older_than,
                dry_run=dry_run,
                batch_size=conf.batch_size,
                batch_seconds=conf.batch_seconds,
                trigger=PurgeRun.Trigger.ADMIN,
                started_by=request.user.get_username(),
                warn=lambda message: messages.warning(request, message),
            )
        except TokenopsError as exc:
            messages.error(request, str(exc))
        except DatabaseError as exc:
            messages.error(
                request,
                _("Database error on %(alias)s: %(error)s")
                % {"alias": repr(self.using), "error": first_line(exc)},
            )
        return None

    def _report(self) -> tuple[Report | None, str]:
        try:
            conf = get_settings()
            return build_report(self.using, conf.older_than, conf.report_top), ""
        except TokenopsError as exc:
            return None, str(exc)
        except DatabaseError as exc:
            return None, _("Database error on %(alias)s: %(error)s") % {
                "alias": repr(self.using),
                "error": first_line(exc),
            }

    def _context(self, request: HttpRequest, *, dry_run: PurgeResult | None) -> dict[str, Any]:
        report, error = self._report()
        chart = None
        rows: list[dict[str, Any]] = []
        warning = ""
        if report is not None:
            counts = report.counts
            chart = expiry_chart(self.using, report.cutoff, counts)
            rows = [
                {"kind": pgettext("tokens", "outstanding"), "counts": counts.outstanding},
                {"kind": pgettext("tokens", "blacklisted"), "counts": counts.blacklisted},
            ]
            if report.history is not None and report.history.overdue:
                warning = overdue_warning(report.history)
        runs_url = None
        if request.user.has_perm(VIEW_PERMISSION) or request.user.has_perm(
            "tokenops.view_purgerun"
        ):
            runs_url = reverse(
                "admin:tokenops_purgerun_changelist", current_app=self.admin_site.name
            )
        return {
            **self.admin_site.each_context(request),
            "title": _("Token hygiene"),
            "opts": self.model._meta,
            "database": self.using,
            "report": report,
            "error": error,
            "rows": rows,
            "ages": [
                {
                    "label": _(label),
                    "outstanding": report.counts.outstanding.expired_by_age[index],
                    "blacklisted": report.counts.blacklisted.expired_by_age[index],
                }
                for index, (label, _low, _high) in enumerate(AGE_BUCKETS)
            ]
            if report
            else [],
            "top_users": [
                {"name": user_label(user.username), "tokens": user.tokens}
                for user in (report.top_users if report else [])
            ],
            "cutoff_line": cutoff_line(report.cutoff) if report else "",
            "last_purge_line": last_purge_line(report.history) if report and report.history else "",
            "overdue_warning": warning,
            "chart": chart,
            "runs": with_shown_outcome(recent_runs(self.using)),
            "runs_url": runs_url,
            "dry_run": dry_run,
            "dry_run_headline": purge_headline(dry_run) if dry_run else "",
            "can_purge": request.user.has_perm(PURGE_PERMISSION),
            "purge_url": reverse(
                "admin:tokenops_tokenhygiene_purge", current_app=self.admin_site.name
            ),
        }
