"""The admin's "Token hygiene" page (figures, chart, history, dry run, purge) and PurgeRun.

Viewing the page needs ``tokenops.view_token_hygiene``; purging needs
``tokenops.run_purge`` as well. Purges and reports go through ``operations`` like the
commands; this module only reads the request, starts the purge and renders.

"Purge now" never runs the purge inside the request (a purge of a million rows outlives a
web server's worker timeout): it sends the Celery task or starts a thread of the web
process (TOKENOPS["ADMIN_PURGE"]), then redirects to the page, which follows the run's
history row until it ends. The confirmed cutoff travels signed in the form and is the
one the purge uses.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieSession
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from .app_settings import DEFAULTS, get_settings
from .chart import expiry_chart
from .cutoff import LEEWAY, OLDER_THAN, Cutoff
from .dbtime import as_utc, to_db
from .durations import format_duration, parse_duration
from .errors import PurgeSkipped, TokenopsError, database_error, first_line
from .history import running_purge, shown_outcome
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
    running_timeout,
)
from .rendering import (
    age_rows,
    blacklisted_tokens,
    last_purge_line,
    outstanding_tokens,
    overdue_warning,
    purge_headline,
    sweeps_line,
    user_label,
)
from .scheduling.schedule import CELERY_TASK

logger = logging.getLogger("tokenops")

VIEW_PERMISSION = "tokenops.view_token_hygiene"
PURGE_PERMISSION = "tokenops.run_purge"
RECENT_RUNS = 20
# While a purge started here runs (or waits for its history row), the page reloads itself.
REFRESH_SECONDS = 2
# A purge sent to Celery that no worker has started after this long: the page says so.
WORKER_WAIT = timedelta(minutes=5)
CUTOFF_SALT = "tokenops.admin.confirmed-cutoff"
# A confirmation page left open longer than this starts nothing: its figures are old.
CONFIRMATION_MAX_AGE = timedelta(hours=1)
STARTED_KEY = "tokenops_admin_purge"
# Every moment on the page: seconds and one zone, the one the commands print.
MOMENT_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

# Purges this web process runs in threads, by database: a second click finds it alive.
_threads: dict[str, threading.Thread] = {}
# Why a thread's purge ended before writing a history row (database unreachable).
_thread_errors: dict[str, tuple[datetime, str]] = {}
_threads_guard = threading.Lock()


def moment_text(value: datetime | None) -> str:
    return "" if value is None else as_utc(value).strftime(MOMENT_FORMAT)


def duration_text(seconds: float) -> str:
    """h:mm:ss, the same in every language."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def run_duration(run: PurgeRun, now: datetime) -> str:
    """Start to end; a running purge: so far; a killed one: to its last sign of life."""
    if run.finished_at is not None:
        end = as_utc(run.finished_at)
    elif getattr(run, "shown_class", run.outcome) == PurgeRun.Outcome.RUNNING:
        end = now
    else:
        end = as_utc(run.heartbeat_at)
    return duration_text((end - as_utc(run.started_at)).total_seconds())


def started_by(run: PurgeRun) -> str:
    """How and by whom, in words: "Admin page: olga", "Command: svc-backup", "Celery task"."""
    who = run.started_by
    if run.trigger == PurgeRun.Trigger.ADMIN:
        return _("Admin page: %(user)s") % {"user": who}
    if run.trigger == PurgeRun.Trigger.TASK:
        return _("Celery task: %(user)s") % {"user": who} if who else _("Celery task")
    return _("Command: %(user)s") % {"user": who} if who else _("Command")


def cutoff_text(cutoff: Cutoff) -> str:
    """The cutoff in the page's terms: settings, never a command-line option."""
    detail = [
        f"TOKENOPS['OLDER_THAN'] = {format_duration(cutoff.older_than)}",
        f"SIMPLE_JWT['LEEWAY'] = {format_duration(cutoff.leeway)}",
    ]
    if cutoff.sliding_window is not None:
        detail.append(
            _("sliding window = %(duration)s")
            % {"duration": format_duration(cutoff.sliding_window)}
        )
    values = {"moment": moment_text(cutoff.moment), "detail": "; ".join(detail)}
    if cutoff.reason in (OLDER_THAN, LEEWAY):
        setting = (
            "TOKENOPS['OLDER_THAN']" if cutoff.reason == OLDER_THAN else "SIMPLE_JWT['LEEWAY']"
        )
        return _(
            # Translators: %(setting)s is TOKENOPS['OLDER_THAN'] or SIMPLE_JWT['LEEWAY'].
            "Cutoff: tokens that expired at or before %(moment)s are purgeable. "
            "The setting %(setting)s sets it (%(detail)s)."
        ) % {**values, "setting": setting}
    return (
        _(
            "Cutoff: tokens that expired at or before %(moment)s are purgeable. Sliding "
            "tokens set it: SIMPLE_JWT['SLIDING_TOKEN_REFRESH_LIFETIME'] plus twice the "
            "leeway (%(detail)s)."
        )
        % values
    )


def last_success_text(report: Report) -> str:
    if report.history is None:
        return ""
    return last_purge_line(report.history, who=started_by, moment=moment_text)


def sign_cutoff(using: str, moment: datetime) -> str:
    return signing.dumps({"database": using, "cutoff": moment.isoformat()}, salt=CUTOFF_SALT)


def confirmed_cutoff(using: str, value: str) -> datetime | None:
    """The cutoff the confirmation page showed, if ``value`` is its untouched, recent signature."""
    try:
        data = signing.loads(value, salt=CUTOFF_SALT, max_age=CONFIRMATION_MAX_AGE)
        moment = datetime.fromisoformat(data["cutoff"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    if data.get("database") != using or moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


def use_celery(mode: str) -> bool:
    """TOKENOPS["ADMIN_PURGE"]: "auto" is Celery when it is installed and has a broker."""
    if mode == "auto":
        return importlib.util.find_spec("celery") is not None and bool(
            getattr(settings, "CELERY_BROKER_URL", None)
        )
    return mode == "celery"


def start_thread(purge: PurgeRequest, clicked_at: datetime) -> bool:
    """Run ``purge`` in a daemon thread of this process; False when one already runs here."""
    with _threads_guard:
        current = _threads.get(purge.database)
        if current is not None and current.is_alive():
            return False
        _thread_errors.pop(purge.database, None)
        thread = threading.Thread(
            target=_purge_in_thread,
            args=(purge, clicked_at),
            name=f"tokenops-purge-{purge.database}",
            daemon=True,
        )
        _threads[purge.database] = thread
        thread.start()
    return True


def background_purge(database: str) -> threading.Thread | None:
    """The thread running (or that ran) this process's last admin purge of ``database``."""
    with _threads_guard:
        return _threads.get(database)


def _purge_in_thread(purge: PurgeRequest, clicked_at: datetime) -> None:
    """The purge on the thread's own connection; its history row is the page's only news."""
    try:
        run_purge(purge)
    except PurgeSkipped:
        pass  # its 'skipped' history row says so
    except Exception as exc:
        logger.exception("token purge started on the admin page failed")
        with _threads_guard:
            _thread_errors[purge.database] = (clicked_at, first_line(exc))
    finally:
        connections.close_all()


def send_task(purge: PurgeRequest) -> None:
    from celery import current_app

    current_app.send_task(
        CELERY_TASK,
        kwargs={
            "database": purge.database,
            "cutoff_at": None if purge.cutoff_at is None else purge.cutoff_at.isoformat(),
            "started_by": purge.started_by,
        },
    )


@dataclass(frozen=True)
class Started:
    """The purge this browser session started, as the session remembers it."""

    database: str
    clicked_at: datetime
    cutoff: datetime
    via: str

    @classmethod
    def from_session(cls, request: HttpRequest) -> Started | None:
        data = request.session.get(STARTED_KEY)
        try:
            return cls(
                data["database"],
                datetime.fromisoformat(data["clicked_at"]),
                datetime.fromisoformat(data["cutoff"]),
                data["via"],
            )
        except (KeyError, TypeError, ValueError):
            return None

    def remember(self, request: HttpRequest) -> None:
        request.session[STARTED_KEY] = {
            "database": self.database,
            "clicked_at": self.clicked_at.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "via": self.via,
        }


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
            # The dry run's batches and history writes commit on their own.
            return transaction.non_atomic_requests(self.admin_site.admin_view(view))

        return [
            path("", wrap(self.hygiene_view), name="tokenops_tokenhygiene_changelist"),
            path("purge/", wrap(self.purge_view), name="tokenops_tokenhygiene_purge"),
        ]

    def page_url(self) -> str:
        return reverse("admin:tokenops_tokenhygiene_changelist", current_app=self.admin_site.name)

    def hygiene_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if request.POST.get("action") == "dry_run":
                result = self._dry_run(request)
                if result is not None:
                    messages.info(request, purge_headline(result))
            return HttpResponseRedirect(request.path)
        return TemplateResponse(
            request, "tokenops/admin/token_hygiene.html", self._context(request)
        )

    def purge_view(self, request: HttpRequest) -> HttpResponse:
        """A confirmation page on GET; a confirmed POST starts the purge and returns at once."""
        if not (self.has_view_permission(request) and request.user.has_perm(PURGE_PERMISSION)):
            raise PermissionDenied
        page = self.page_url()
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            self._start(request)
            return HttpResponseRedirect(page)
        running = self._running()
        report, error = (None, "") if running else self._report(ReportRequest(self.using, top=0))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "opts": self.model._meta,
            "report": report,
            "error": error,
            "running": running,
            "cutoff_line": cutoff_text(report.cutoff) if report else "",
            "signed_cutoff": sign_cutoff(self.using, report.cutoff.moment) if report else "",
            "page_url": page,
        }
        return TemplateResponse(request, "tokenops/admin/purge_confirmation.html", context)

    def _running(self) -> dict[str, Any] | None:
        """The real purge running on the database now (any starter), with its progress."""
        thread = background_purge(self.using)
        timeout = running_timeout() or parse_duration(DEFAULTS["RUNNING_TIMEOUT"])
        run = running_purge(self.using, timeout)
        if run is None:
            if thread is not None and thread.is_alive():
                return {"run": None}  # started here, its history row not written yet
            return None
        return {
            "run": run,
            "who": started_by(run),
            "since": moment_text(run.started_at),
            "elapsed": duration_text((datetime.now(UTC) - as_utc(run.started_at)).total_seconds()),
            "heartbeat": moment_text(run.heartbeat_at),
            "deleted": run.outstanding_deleted or 0,
            "blacklisted_deleted": run.blacklisted_deleted or 0,
            "purgeable": run.outstanding_purgeable,
        }

    def _start(self, request: HttpRequest) -> None:
        """Start the confirmed purge outside this request, unless one already runs."""
        running = self._running()
        if running is not None:
            messages.warning(request, self._already_running(running))
            return
        cutoff = confirmed_cutoff(self.using, request.POST.get("cutoff", ""))
        if cutoff is None:
            messages.error(
                request, _("The confirmation has expired or was altered: nothing was started.")
            )
            return
        try:
            via = "celery" if use_celery(get_settings().admin_purge) else "thread"
        except TokenopsError as exc:
            messages.error(request, str(exc))
            return
        purge = PurgeRequest(
            self.using,
            trigger=PurgeRun.Trigger.ADMIN,
            started_by=request.user.get_username(),
            cutoff_at=cutoff,
        )
        clicked_at = datetime.now(UTC)
        started = Started(self.using, clicked_at, cutoff, via)
        before = request.session.get(STARTED_KEY)
        # Saved now, before the purge starts: on SQLite a session written after it would
        # wait for the purge's first batch to commit (up to BATCH_SECONDS_IDLE).
        started.remember(request)
        if not isinstance(request.session, CookieSession):  # a cookie is sent with the response
            request.session.save()
            request.session.modified = False
        if via == "celery":
            try:
                send_task(purge)
            except Exception as exc:
                request.session[STARTED_KEY] = before
                messages.error(
                    request,
                    _("The purge could not be sent to Celery: %(error)s")
                    % {"error": first_line(exc)},
                )
        elif not start_thread(purge, clicked_at):
            request.session[STARTED_KEY] = before
            messages.warning(request, self._already_running({"run": None}))

    def _already_running(self, running: dict[str, Any]) -> str:
        if running["run"] is None:
            return _(
                "A purge is already starting on database “%(database)s”: nothing else was started."
            ) % {"database": self.using}
        return _(
            "A purge is already running on database “%(database)s” since %(moment)s "
            "(%(who)s): nothing else was started."
        ) % {"database": self.using, "moment": running["since"], "who": running["who"]}

    def _dry_run(self, request: HttpRequest) -> PurgeResult | None:
        purge = PurgeRequest(
            self.using,
            dry_run=True,
            trigger=PurgeRun.Trigger.ADMIN,
            started_by=request.user.get_username(),
        )
        try:
            return run_purge(purge, warn=lambda message: messages.warning(request, message))
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

    def _follow(self, request: HttpRequest) -> str:
        """Where the purge this session started stands: "" when it ended (or none was).

        Its end becomes a message, once; until then the page says what it waits for.
        """
        started = Started.from_session(request)
        if started is None or started.database != self.using:
            return ""
        run = self._started_run(request, started)
        if run is None:
            failure = _thread_errors.get(self.using)
            if failure is not None and failure[0] == started.clicked_at:
                messages.error(request, failure[1])
            elif started.via == "celery" and datetime.now(UTC) - started.clicked_at > WORKER_WAIT:
                messages.warning(
                    request,
                    _(
                        "No Celery worker has started the purge sent at %(moment)s: "
                        "is a worker running?"
                    )
                    % {"moment": moment_text(started.clicked_at)},
                )
            elif started.via == "celery" or self._running() is not None:
                return "celery" if started.via == "celery" else "starting"
            del request.session[STARTED_KEY]
            return ""
        outcome = shown_outcome(run, running_timeout())
        if outcome == PurgeRun.Outcome.RUNNING:
            return "running"
        del request.session[STARTED_KEY]
        self._outcome_message(request, run, outcome, started)
        return ""

    def _started_run(self, request: HttpRequest, started: Started) -> PurgeRun | None:
        try:
            return (
                PurgeRun.objects.using(self.using)
                .filter(
                    dry_run=False,
                    trigger__in=(PurgeRun.Trigger.ADMIN, PurgeRun.Trigger.TASK),
                    started_by=request.user.get_username(),
                    started_at__gte=to_db(started.clicked_at - timedelta(seconds=1)),
                )
                .order_by("started_at", "pk")
                .first()
            )
        except DatabaseError:
            return None

    def _outcome_message(
        self, request: HttpRequest, run: PurgeRun, outcome: str, started: Started
    ) -> None:
        if outcome == PurgeRun.Outcome.SKIPPED:
            messages.warning(request, run.error)
            return
        if outcome != PurgeRun.Outcome.OK:
            messages.error(
                request,
                _("The purge started at %(moment)s ended %(outcome)s: %(error)s")
                % {
                    "moment": moment_text(run.started_at),
                    "outcome": PurgeRun.Outcome(outcome).label,
                    "error": run.error,
                },
            )
            return
        seconds = (
            as_utc(run.finished_at or run.heartbeat_at) - as_utc(run.started_at)
        ).total_seconds()
        values = {
            "outstanding": outstanding_tokens(run.outstanding_deleted or 0),
            "blacklisted": blacklisted_tokens(run.blacklisted_deleted or 0),
            "database": run.database,
            "duration": duration_text(seconds),
            "cutoff": moment_text(run.cutoff),
        }
        if run.cutoff is not None and as_utc(run.cutoff) == started.cutoff:
            text = _(
                "Deleted %(outstanding)s and %(blacklisted)s from database “%(database)s” in "
                "%(duration)s, with the cutoff you confirmed: %(cutoff)s."
            )
        else:
            text = _(
                "Deleted %(outstanding)s and %(blacklisted)s from database “%(database)s” in "
                "%(duration)s, with the cutoff %(cutoff)s: earlier than the one you confirmed, "
                "because the settings changed since."
            )
        if not run.complete:
            text += " " + _("It stopped early (its time budget); the next run continues.")
        messages.success(request, text % values)

    def _context(self, request: HttpRequest) -> dict[str, Any]:
        following = self._follow(request)
        running = self._running()
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
        # The history stays readable when the token tables are not (the page explains).
        runs = list(report.runs) if report else purge_runs(self.using, RECENT_RUNS)
        now = datetime.now(UTC)
        for run in runs:
            run.started_text = moment_text(run.started_at)
            run.who = started_by(run)
            run.duration = run_duration(run, now)
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
            "generated": moment_text(report.cutoff.now) if report else "",
            "cutoff_line": cutoff_text(report.cutoff) if report else "",
            "last_purge_line": last_success_text(report) if report else "",
            "sweeps_line": sweeps_line(report.sweeps) if report and report.sweeps else "",
            "overdue_warning": warning,
            "chart": chart,
            "runs": runs,
            "runs_url": runs_url,
            "running": running,
            "following": following,
            "refresh": REFRESH_SECONDS if running or following else None,
            "can_purge": request.user.has_perm(PURGE_PERMISSION),
            "purge_url": reverse(
                "admin:tokenops_tokenhygiene_purge", current_app=self.admin_site.name
            ),
        }
