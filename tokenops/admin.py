"""The admin's "Token hygiene" page (figures, chart, history, dry run, purge) and PurgeRun.

Viewing the page needs ``tokenops.view_token_hygiene``; purging needs
``tokenops.run_purge`` as well. Purges and reports go through ``operations`` like the
commands; this module only reads the request and renders.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from .chart import expiry_chart
from .errors import PurgeSkipped, TokenopsError, database_error
from .models import PurgeRun, TokenHygiene
from .operations import (
    PurgeRequest,
    PurgeResult,
    Report,
    ReportRequest,
    build_report,
    outcome_shown,
    purge_runs,
    run_purge,
)
from .rendering import (
    age_rows,
    cutoff_line,
    last_purge_line,
    overdue_warning,
    purge_headline,
    user_label,
)

VIEW_PERMISSION = "tokenops.view_token_hygiene"
PURGE_PERMISSION = "tokenops.run_purge"
RECENT_RUNS = 20


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
        "complete",
        "finished_at",
    )
    list_filter = ("outcome", "dry_run", "complete", "trigger", "database")
    date_hierarchy = "started_at"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm(VIEW_PERMISSION)

    @admin.display(description=gettext_lazy("outcome"), ordering="outcome")
    def outcome_shown(self, run: PurgeRun) -> str:
        return PurgeRun.Outcome(outcome_shown(run)).label


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
        report, error = self._report(ReportRequest(self.using, top=0))
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
        purge = PurgeRequest(
            self.using,
            dry_run=dry_run,
            trigger=PurgeRun.Trigger.ADMIN,
            started_by=request.user.get_username(),
        )
        try:
            return run_purge(purge, warn=lambda message: messages.warning(request, message))
        except PurgeSkipped as exc:
            messages.warning(request, str(exc))
        except TokenopsError as exc:
            messages.error(request, str(exc))
        except DatabaseError as exc:
            messages.error(request, database_error(self.using, exc))
        return None

    def _report(self, wanted: ReportRequest) -> tuple[Report | None, str]:
        try:
            return build_report(wanted), ""
        except TokenopsError as exc:
            return None, str(exc)
        except DatabaseError as exc:
            return None, database_error(self.using, exc)

    def _context(self, request: HttpRequest, *, dry_run: PurgeResult | None) -> dict[str, Any]:
        report, error = self._report(
            ReportRequest(self.using, recent_runs=RECENT_RUNS, by_time_left=True)
        )
        chart = None
        rows: list[dict[str, Any]] = []
        warning = ""
        if report is not None:
            counts = report.counts
            chart = expiry_chart(counts)
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
                {"label": label, "outstanding": outstanding, "blacklisted": blacklisted}
                for label, outstanding, blacklisted in age_rows(report.counts)
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
            # The history stays readable when the token tables are not (the page explains).
            "runs": report.runs if report else purge_runs(self.using, RECENT_RUNS),
            "runs_url": runs_url,
            "dry_run": dry_run,
            "dry_run_headline": purge_headline(dry_run) if dry_run else "",
            "can_purge": request.user.has_perm(PURGE_PERMISSION),
            "purge_url": reverse(
                "admin:tokenops_tokenhygiene_purge", current_app=self.admin_site.name
            ),
        }
