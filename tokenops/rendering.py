"""Turn reports and purge results into text: tables (tabulate), JSON and CSV.

Only ASCII punctuation is used in tables, so output survives any Windows console code
page; JSON escapes non-ASCII for the same reason. Text that comes from data (user names,
who started a purge, an error) passes ``printable`` before it reaches a table or a line:
JSON and CSV keep it exact.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext
from tabulate import tabulate

from .counting import BUCKETS, TableCounts, TokenCounts
from .cutoff import FROM_OPTION, LEEWAY, OLDER_THAN, SLIDING, Cutoff
from .dbtime import as_utc
from .durations import format_duration
from .models import PurgeRun
from .operations import (
    ATTENTION_FAILED,
    ATTENTION_NEVER,
    ATTENTION_STALE,
    HEALTHY_RECENT,
    HEALTHY_SWEPT,
    HEALTHY_YOUNG,
)

if TYPE_CHECKING:
    from .operations import Health, Metrics, PurgeResult, PurgeStatus, Report
    from .sweeping import SweepStatus, SweepTotals

TABLE_FORMAT = "simple"
KINDS = ("outstanding", "blacklisted")
# The JSON key and CSV name of blacklist rows whose outstanding row is gone.
ORPHANS = "orphaned_blacklisted"
# Invisible characters that reorder or hide text: shown escaped like control characters.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escaped(char: str) -> str:
    if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI:
        return repr(char)[1:-1]
    return char


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (ESC as ``\\x1b``, ``\\n``).

    A user name holding ESC sequences would clear the screen, and ``\\r`` or ``\\n``
    would forge table rows; Django's username validator refuses them, but the ORM,
    other authentication backends and custom user models do not.
    """
    if text.isprintable():
        return text
    return "".join(_escaped(char) for char in text)


def when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


# Names as the user wrote them, so never translated.
OLDER_THAN_OPTION = "--older-than"
OLDER_THAN_SETTING = "TOKENOPS['OLDER_THAN']"


def older_than_name(cutoff: Cutoff) -> str:
    """Where older_than came from: the option (or task argument), or the setting."""
    return OLDER_THAN_OPTION if cutoff.older_than_source == FROM_OPTION else OLDER_THAN_SETTING


def cutoff_line(cutoff: Cutoff) -> str:
    """The cutoff, what set its margin, and every margin that was weighed."""
    older_than = older_than_name(cutoff)
    detail = [
        f"{older_than} {format_duration(cutoff.older_than)}",
        f"LEEWAY {format_duration(cutoff.leeway)}",
    ]
    if cutoff.sliding_window is not None:
        detail.append(
            _("sliding window %(duration)s") % {"duration": format_duration(cutoff.sliding_window)}
        )
    setters = {OLDER_THAN: older_than, LEEWAY: "LEEWAY", SLIDING: _("the sliding window")}
    return _(
        # Translators: %(setter)s is --older-than, TOKENOPS['OLDER_THAN'], LEEWAY or
        # "the sliding window"; %(detail)s is "--older-than 1w, LEEWAY 1m".
        "Cutoff: tokens that expired at or before %(moment)s are purgeable "
        "(set by %(setter)s; %(detail)s)."
    ) % {
        "moment": when(cutoff.moment),
        "setter": setters[cutoff.reason],
        "detail": ", ".join(detail),
    }


def cutoff_dict(cutoff: Cutoff) -> dict[str, Any]:
    return {
        "cutoff": cutoff.moment.isoformat(),
        "cutoff_reason": cutoff.reason,
        "older_than_seconds": int(cutoff.older_than.total_seconds()),
        "older_than_source": cutoff.older_than_source,
        "leeway_seconds": cutoff.leeway.total_seconds(),
        "sliding_window_seconds": (
            None if cutoff.sliding_window is None else cutoff.sliding_window.total_seconds()
        ),
    }


def table_counts_dict(counts: TableCounts) -> dict[str, int]:
    return {
        "total": counts.total,
        "active": counts.active,
        "expired": counts.expired,
        "purgeable": counts.purgeable,
    }


def kind_label(kind: str) -> str:
    return {
        "outstanding": pgettext("tokens", "outstanding"),
        "blacklisted": pgettext("tokens", "blacklisted"),
        ORPHANS: pgettext("tokens", "orphaned"),
    }[kind]


def orphans_note() -> str:
    return _(
        "orphaned: blacklist rows whose outstanding token row is gone; they blacklist "
        "nothing, and a purge deletes them."
    )


def _summary_rows(counts: TokenCounts, label: Callable[[str], str] = str) -> list[list[Any]]:
    """One row a table; orphan blacklist rows, when there are any, have no expiry (None)."""
    rows = [
        [label(kind), c.total, c.active, c.expired, c.purgeable]
        for kind, c in zip(KINDS, (counts.outstanding, counts.blacklisted), strict=True)
    ]
    if counts.orphans:
        rows.append([label(ORPHANS), counts.orphans, None, None, counts.orphans])
    return rows


# CSV keeps these English names (a file for programs); tables translate them.
SUMMARY_HEADERS = ["tokens", "total", "active", "expired", "purgeable"]


def summary_headers() -> list[str]:
    return [
        pgettext("tokens", "tokens"),
        pgettext("tokens", "total"),
        pgettext("tokens", "active"),
        pgettext("tokens", "expired"),
        pgettext("tokens", "purgeable"),
    ]


def report_dict(report: Report) -> dict[str, Any]:
    counts = report.counts
    return {
        "database": report.database,
        "generated_at": report.cutoff.now.isoformat(),
        **cutoff_dict(report.cutoff),
        "outstanding": table_counts_dict(counts.outstanding),
        "blacklisted": table_counts_dict(counts.blacklisted),
        ORPHANS: counts.orphans,
        "expired_by_age": [
            {
                "age": label,
                "outstanding": counts.outstanding.expired_by_age[index],
                "blacklisted": counts.blacklisted.expired_by_age[index],
            }
            for index, (label, _low, _high) in enumerate(BUCKETS)
        ],
        "top_users": [
            {"user_id": user.user_id, "username": user.username, "tokens": user.tokens}
            for user in report.top_users
        ],
        **history_dict(report.history),
        **sweeps_dict(report.sweeps),
    }


def history_dict(status: PurgeStatus | None) -> dict[str, Any]:
    if status is None:
        return {}
    last = status.last_success
    return {
        "last_purge": None
        if last is None
        else {
            "started_at": as_utc(last.started_at).isoformat(),
            "finished_at": None
            if last.finished_at is None
            else as_utc(last.finished_at).isoformat(),
            "trigger": last.trigger,
            "started_by": last.started_by,
            "deleted": {
                "outstanding": last.outstanding_deleted,
                "blacklisted": last.blacklisted_deleted,
            },
        },
        "purge_overdue": status.overdue,
    }


def outstanding_tokens(count: int) -> str:
    """A count with its noun in the plural form it needs (like the helpers below)."""
    return ngettext("%(count)s outstanding token", "%(count)s outstanding tokens", count) % {
        "count": count
    }


def blacklisted_tokens(count: int) -> str:
    return ngettext("%(count)s blacklisted token", "%(count)s blacklisted tokens", count) % {
        "count": count
    }


def days(count: int) -> str:
    return ngettext("%(count)s day", "%(count)s days", count) % {"count": count}


def batches(count: int) -> str:
    return ngettext("%(count)s batch", "%(count)s batches", count) % {"count": count}


def purgeable_tokens(count: int) -> str:
    return ngettext("%(count)s token is purgeable", "%(count)s tokens are purgeable", count) % {
        "count": count
    }


def last_purge_line(
    status: PurgeStatus,
    *,
    who: Callable[[PurgeRun], str] | None = None,
    moment: Callable[[datetime], str] | None = None,
) -> str:
    """The report's last line; the admin page passes its own ``who`` and ``moment`` words."""
    if not status.available:
        return _("Last successful purge: unknown (the purge history cannot be read: %(error)s)") % {
            "error": status.error
        }
    last = status.last_success
    if last is None:
        return _("Last successful purge: none recorded.")
    if who is None:
        by = f", {printable(last.started_by)}" if last.started_by else ""
        trigger = f"{last.get_trigger_display()}{by}"
    else:
        trigger = who(last)
    ended = last.finished_at or last.started_at
    return _(
        # Translators: %(outstanding)s is "10 outstanding tokens", %(blacklisted)s
        # "3 blacklisted tokens".
        "Last successful purge: %(moment)s (%(trigger)s), %(outstanding)s "
        "and %(blacklisted)s deleted."
    ) % {
        "moment": when(as_utc(ended)) if moment is None else moment(ended),
        "trigger": trigger,
        "outstanding": outstanding_tokens(last.outstanding_deleted or 0),
        "blacklisted": blacklisted_tokens(last.blacklisted_deleted or 0),
    }


def overdue_warning(status: PurgeStatus) -> str:
    """Why a missing purge matters: the scheduled job may have stopped without a word."""
    values = {"purgeable": purgeable_tokens(status.purgeable)}
    if status.last_success is None or status.days_since is None:
        values["warn_after"] = format_duration(status.warn_after)
        return (
            _(
                # Translators: %(purgeable)s is "5 tokens are purgeable", %(warn_after)s "2w".
                "Warning: no purge has ever succeeded, and %(purgeable)s (the oldest "
                "expired more than %(warn_after)s ago). Is the scheduled purge running?"
            )
            % values
        )
    values["days"] = days(status.days_since)
    return (
        _(
            # Translators: %(days)s is "20 days", %(purgeable)s "5 tokens are purgeable".
            "Warning: no purge has succeeded for %(days)s, and %(purgeable)s. "
            "Is the scheduled purge still running?"
        )
        % values
    )


def age_rows(counts: TokenCounts) -> list[tuple[str, int, int]]:
    """(translated bucket, outstanding, blacklisted) of expired tokens by time since expiry."""
    return [
        (_(label), counts.outstanding.expired_by_age[i], counts.blacklisted.expired_by_age[i])
        for i, (label, _low, _high) in enumerate(BUCKETS)
    ]


def user_label(username: str | None) -> str:
    return _("(deleted user)") if username is None else printable(username)


def render_report(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report_dict(report), indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SUMMARY_HEADERS)
        writer.writerows(_summary_rows(report.counts))
        return buffer.getvalue().rstrip("\n")
    counts = report.counts
    parts = [
        _("Token report for database '%(database)s' at %(moment)s")
        % {"database": printable(report.database), "moment": when(report.cutoff.now)},
        cutoff_line(report.cutoff),
        "",
        tabulate(
            _summary_rows(counts, kind_label),
            headers=summary_headers(),
            tablefmt=TABLE_FORMAT,
            missingval="-",
        ),
        *([orphans_note()] if counts.orphans else []),
        "",
        _("Expired tokens by time since expiry"),
        tabulate(
            age_rows(counts),
            headers=[
                pgettext("tokens", "expired"),
                pgettext("tokens", "outstanding"),
                pgettext("tokens", "blacklisted"),
            ],
            tablefmt=TABLE_FORMAT,
        ),
    ]
    if report.top_users:
        parts += [
            "",
            ngettext(
                "Top %(count)s user by outstanding tokens",
                "Top %(count)s users by outstanding tokens",
                len(report.top_users),
            )
            % {"count": len(report.top_users)},
            tabulate(
                [[user_label(u.username), u.tokens] for u in report.top_users],
                headers=[pgettext("tokens", "user"), pgettext("tokens", "tokens")],
                tablefmt=TABLE_FORMAT,
            ),
        ]
    # Upkeep last: what sweeps do, then the last purge (the report's final line).
    if report.sweeps is not None:
        parts += ["", sweeps_line(report.sweeps)]
    if report.history is not None:
        parts += ["", last_purge_line(report.history)]
    return "\n".join(parts)


def purge_dict(result: PurgeResult) -> dict[str, Any]:
    def pair(counts: TokenCounts, attr: str) -> dict[str, int]:
        return {kind: getattr(getattr(counts, kind), attr) for kind in KINDS}

    return {
        "dry_run": result.dry_run,
        "database": result.database,
        **cutoff_dict(result.cutoff),
        "before": pair(result.before, "total"),
        "purgeable": pair(result.before, "purgeable"),
        "deleted": {
            "outstanding": result.deleted.outstanding,
            "blacklisted": result.deleted.blacklisted,
        },
        "after": pair(result.after, "total"),
        ORPHANS: {
            "before": result.before.orphans,
            "deleted": result.deleted.orphans,
            "after": result.after.orphans,
        },
        "batches": result.stats.batches,
        "longest_transaction_seconds": round(result.stats.longest_transaction, 4),
        "seconds": round(result.seconds, 4),
        "complete": result.complete,
        "remaining": {
            "outstanding": result.remaining.outstanding,
            "blacklisted": result.remaining.blacklisted,
        },
        "max_seconds": result.max_seconds,
    }


def seconds_text(value: float) -> str:
    """A budget as the user wrote it: 600, 2.5."""
    return f"{value:g}"


def stopped_line(result: PurgeResult) -> str:
    """Why a purge ended with rows left, and that the next run continues."""
    values = {
        "outstanding": outstanding_tokens(result.remaining.outstanding),
        "blacklisted": blacklisted_tokens(result.remaining.blacklisted),
    }
    if result.max_seconds is not None and result.seconds >= result.max_seconds:
        return _(
            # Translators: %(outstanding)s is "120000 outstanding tokens", %(blacklisted)s
            # "35000 blacklisted tokens".
            "Stopped after the %(budget)s s budget: %(outstanding)s and %(blacklisted)s "
            "are still purgeable; the next run continues."
        ) % {**values, "budget": seconds_text(result.max_seconds)}
    return (
        _(
            # Translators: %(outstanding)s is "120000 outstanding tokens", %(blacklisted)s
            # "35000 blacklisted tokens".
            "Stopped early: %(outstanding)s and %(blacklisted)s are still purgeable; "
            "the next run continues."
        )
        % values
    )


def purge_headline(result: PurgeResult) -> str:
    before = result.before
    if result.dry_run:
        return _(
            # Translators: %(outstanding)s is "5 outstanding tokens", %(blacklisted)s
            # "2 blacklisted tokens".
            "Dry run: nothing was deleted. Would delete %(outstanding)s and %(blacklisted)s "
            "from database '%(database)s'."
        ) % {
            "outstanding": outstanding_tokens(before.outstanding.purgeable),
            "blacklisted": blacklisted_tokens(before.blacklisted.purgeable),
            "database": printable(result.database),
        }
    return _(
        # Translators: %(outstanding)s is "5 outstanding tokens", %(blacklisted)s
        # "2 blacklisted tokens", %(batches)s "3 batches".
        "Deleted %(outstanding)s and %(blacklisted)s from database '%(database)s' in "
        "%(seconds).2f s (%(batches)s, longest transaction %(longest).2f s)."
    ) % {
        "outstanding": outstanding_tokens(result.deleted.outstanding),
        "blacklisted": blacklisted_tokens(result.deleted.blacklisted),
        "database": printable(result.database),
        "seconds": result.seconds,
        "batches": batches(result.stats.batches),
        "longest": result.stats.longest_transaction,
    }


def render_purge(result: PurgeResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(purge_dict(result), indent=2)
    data = purge_dict(result)
    rows = [
        [
            kind_label(kind),
            data["before"][kind],
            data["purgeable"][kind],
            data["deleted"][kind],
            data["after"][kind],
        ]
        for kind in KINDS
    ]
    orphans = data[ORPHANS]
    if any(orphans.values()):
        rows.append(
            [
                kind_label(ORPHANS),
                orphans["before"],
                orphans["before"],
                orphans["deleted"],
                orphans["after"],
            ]
        )
    return "\n".join(
        [
            purge_headline(result),
            *([stopped_line(result)] if result.stopped_early else []),
            cutoff_line(result.cutoff),
            "",
            tabulate(
                rows,
                headers=[
                    pgettext("tokens", "tokens"),
                    pgettext("tokens", "before"),
                    pgettext("tokens", "purgeable"),
                    pgettext("tokens", "deleted"),
                    pgettext("tokens", "after"),
                ],
                tablefmt=TABLE_FORMAT,
            ),
            *([orphans_note()] if any(orphans.values()) else []),
        ]
    )


def check_line(health: Health) -> str:
    """The one line of ``token_report --check``: OK or ATTENTION, and why."""
    values: dict[str, Any] = {"database": printable(health.database)}
    if health.since is not None:
        values["moment"] = when(health.since)
    reason = health.reason
    if reason == ATTENTION_FAILED:
        run = health.latest
        assert run is not None
        outcome = PurgeRun.Outcome(health.latest_outcome).label
        values.update(outcome=outcome, error=printable(run.error or "-"))
        return (
            _(
                # Translators: %(outcome)s is "failed" or "interrupted".
                "ATTENTION: the latest purge on database '%(database)s', started at "
                "%(moment)s, %(outcome)s: %(error)s"
            )
            % values
        )
    if reason == ATTENTION_STALE:
        values["warn_after"] = format_duration(health.warn_after)
        return (
            _(
                "ATTENTION: no purge has succeeded on database '%(database)s' since "
                "%(moment)s (more than %(warn_after)s), and tokens are purgeable."
            )
            % values
        )
    if reason == ATTENTION_NEVER:
        values["warn_after"] = format_duration(health.warn_after)
        return (
            _(
                "ATTENTION: no purge has ever succeeded on database '%(database)s', and "
                "tokens that expired more than %(warn_after)s ago are purgeable."
            )
            % values
        )
    if reason == HEALTHY_RECENT:
        return _("OK: the last purge on database '%(database)s' succeeded at %(moment)s.") % values
    if reason == HEALTHY_YOUNG:
        values["warn_after"] = format_duration(health.warn_after)
        return (
            _(
                "OK: no purge recorded on database '%(database)s' yet, and no purgeable "
                "token expired more than %(warn_after)s ago."
            )
            % values
        )
    if reason == HEALTHY_SWEPT:
        values["warn_after"] = format_duration(health.warn_after)
        return (
            _(
                "OK: in-app sweeps keep database '%(database)s' clean: they last removed "
                "tokens in the hour from %(moment)s, and no purgeable token expired more "
                "than %(warn_after)s ago."
            )
            % values
        )
    return _("OK: nothing is purgeable on database '%(database)s'.") % values


def _label_value(value: str) -> str:
    """A label value in the exposition format: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in pairs.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render_openmetrics(metrics: Metrics, *, database_label: str | None = None) -> str:
    """The OpenMetrics text format (node_exporter's textfile collector reads it), # EOF last.

    Names and help texts stay English: they are an interface for programs.
    """
    base = {} if database_label is None else {"database": database_label}
    lines: list[str] = []

    def family(
        name: str,
        help_text: str,
        samples: list[tuple[dict[str, str], float]],
        kind: str = "gauge",
    ) -> None:
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"# HELP {name} {help_text}")
        sample = f"{name}_total" if kind == "counter" else name
        for labels, value in samples:
            lines.append(f"{sample}{_labels({**base, **labels})} {_number(value)}")

    counts = metrics.report.counts
    family(
        "tokenops_tokens",
        "Token rows by table and state (purgeable: under the safe cutoff).",
        [
            ({"table": kind, "state": state}, getattr(getattr(counts, kind), state))
            for kind in KINDS
            for state in ("total", "active", "expired", "purgeable")
        ],
    )
    history = metrics.report.history
    last = history.last_success if history is not None else None
    family(
        "tokenops_last_success_timestamp_seconds",
        "When the last real purge that succeeded ended (Unix time; absent: none recorded).",
        [] if last is None else [({}, as_utc(last.finished_at or last.started_at).timestamp())],
    )
    run = metrics.health.latest
    family(
        "tokenops_last_run_deleted",
        "Rows the latest real purge deleted, by table.",
        []
        if run is None
        else [
            ({"table": "outstanding"}, run.outstanding_deleted or 0),
            ({"table": "blacklisted"}, run.blacklisted_deleted or 0),
        ],
    )
    family(
        "tokenops_last_run_seconds",
        "How long the latest real purge ran.",
        []
        if run is None or run.finished_at is None
        else [({}, max(0.0, (run.finished_at - run.started_at).total_seconds()))],
    )
    family(
        "tokenops_last_run_complete",
        "1 when the latest real purge left nothing purgeable, 0 when it was cut short.",
        [] if run is None else [({}, 1 if run.complete else 0)],
    )
    family(
        "tokenops_purge_overdue",
        "1 when tokens are purgeable and no purge succeeded within PURGE_WARN_AFTER.",
        [({}, 1 if metrics.health.overdue else 0)],
    )
    family(
        "tokenops_purge_attention",
        "1 when token_report --check asks for attention (overdue, failed or interrupted).",
        [({}, 1 if metrics.health.attention else 0)],
    )
    family(
        "tokenops_purge_running",
        "1 while a real purge is running.",
        [({}, 1 if metrics.running else 0)],
    )
    sweeps = metrics.report.sweeps
    total = None if sweeps is None else sweeps.total
    family(
        "tokenops_sweep_probability",
        "SWEEP_PROBABILITY: the chance that issuing a token sweeps (0: in-app sweeps off).",
        [] if sweeps is None else [({}, sweeps.probability)],
    )
    family(
        "tokenops_sweep_deleted",
        "Rows in-app sweeps deleted, by table (absent: their tally cannot be read).",
        []
        if total is None
        else [
            ({"table": "outstanding"}, total.outstanding),
            ({"table": "blacklisted"}, total.blacklisted),
        ],
        kind="counter",
    )
    family(
        "tokenops_sweeps",
        "In-app sweeps that deleted rows.",
        [] if total is None else [({}, total.sweeps)],
        kind="counter",
    )
    lines.append("# EOF")
    return "\n".join(lines)


def _totals_dict(totals: SweepTotals | None) -> dict[str, int] | None:
    if totals is None:
        return None
    return {
        "outstanding": totals.outstanding,
        "blacklisted": totals.blacklisted,
        "sweeps": totals.sweeps,
    }


def sweeps_dict(status: SweepStatus | None) -> dict[str, Any]:
    """The report's "sweeps" key: settings, the last 24 hours, all time (None: unreadable)."""
    if status is None:
        return {}
    return {
        "sweeps": {
            "enabled": status.enabled,
            "probability": status.probability,
            "max_rows": status.max_rows,
            "last_24h": _totals_dict(status.last_24h),
            "total": _totals_dict(status.total),
            "last_swept": None if status.last_swept is None else status.last_swept.isoformat(),
            "error": status.error,
        }
    }


def sweeps_line(status: SweepStatus) -> str:
    """Whether in-app sweeps are on, and what they removed in the last 24 hours."""
    if not status.enabled:
        return _("In-app sweeps are off.")
    if status.last_24h is None:
        return _("In-app sweeps are on; their tally cannot be read: %(error)s") % {
            "error": printable(status.error)
        }
    count = status.last_24h.outstanding
    return ngettext(
        "In-app sweeps removed %(count)s token in the last 24 h "
        "(probability %(probability)s, at most %(rows)s rows a sweep).",
        "In-app sweeps removed %(count)s tokens in the last 24 h "
        "(probability %(probability)s, at most %(rows)s rows a sweep).",
        count,
    ) % {"count": count, "probability": f"{status.probability:g}", "rows": status.max_rows}
