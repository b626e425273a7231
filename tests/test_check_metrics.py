"""token_report --check (one line, exit 0/4/1) and --format openmetrics (parsed for real)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.utils import make_tokens, recorded_run, run_command, utcnow
from tokenops.dbtime import to_db
from tokenops.models import PurgeRun
from tokenops.operations import ReportRequest, check_health

pytestmark = pytest.mark.django_db(transaction=True)


def check(*args: str):
    return run_command("token_report", "--check", *args)


def test_healthy_after_a_recent_purge():
    make_tokens([utcnow() - timedelta(days=40)] * 2, user=None)
    assert run_command("token_purge", "-v", "0").code == 0
    result = check()
    assert result.code == 0
    assert result.err == ""
    assert result.out.startswith("OK: the last purge on database 'default' succeeded at ")
    assert result.out.count("\n") == 1


def test_healthy_when_nothing_is_purgeable():
    make_tokens([utcnow() + timedelta(days=1)], user=None)
    result = check()
    assert result.code == 0
    assert result.out.startswith("OK: no purge recorded on database 'default' yet")
    recorded_run("ok", ago=timedelta(days=20))
    result = check()
    assert (result.code, result.out) == (0, "OK: nothing is purgeable on database 'default'.\n")


def test_never_purged_counts_from_the_oldest_purgeable_expiry():
    make_tokens([utcnow() - timedelta(days=3)], user=None)
    young = check()
    assert (young.code, young.out) == (
        0,
        "OK: no purge recorded on database 'default' yet, and no purgeable token expired "
        "more than 2w ago.\n",
    )
    make_tokens([utcnow() - timedelta(days=20)], user=None)
    old = check()
    assert (old.code, old.out, old.err) == (
        4,
        "ATTENTION: no purge has ever succeeded on database 'default', and tokens that "
        "expired more than 2w ago are purgeable.\n",
        "",
    )


def test_a_stale_last_success_needs_attention_only_while_tokens_are_purgeable():
    recorded_run("ok", ago=timedelta(days=20))
    assert check().code == 0  # nothing purgeable: nothing overdue
    make_tokens([utcnow() - timedelta(days=1)], user=None)
    result = check()
    assert result.code == 4
    assert result.out.startswith("ATTENTION: no purge has succeeded on database 'default' since ")
    # A dry run or a skipped run is no success.
    recorded_run("ok", ago=timedelta(hours=1), dry_run=True)
    recorded_run("skipped", ago=timedelta(minutes=5))
    assert check().code == 4
    assert check("--older-than", "2d").code == 0  # with a wider margin nothing is purgeable


def test_the_latest_real_purge_failed_or_was_interrupted(settings):
    recorded_run("ok", ago=timedelta(days=2))
    recorded_run("failed", ago=timedelta(days=1), error="Database error on 'default': boom")
    result = check()
    assert result.code == 4
    assert result.out.startswith("ATTENTION: the latest purge on database 'default', started at ")
    assert result.out.endswith(", failed: Database error on 'default': boom\n")
    recorded_run("interrupted", ago=timedelta(hours=1), error="Stopped by SIGTERM.")
    assert "interrupted: Stopped by SIGTERM." in check().out
    # A "running" row silent past RUNNING_TIMEOUT was killed: interrupted too.
    recorded_run("ok", ago=timedelta(minutes=30))
    assert check().code == 0
    settings.TOKENOPS = {"RUNNING_TIMEOUT": "10m"}
    recorded_run("running", ago=timedelta(minutes=20))
    PurgeRun.objects.filter(outcome="running").update(finished_at=None)
    assert check().code == 4


def test_after_a_real_failed_purge_with_the_command(settings):
    make_tokens([utcnow() - timedelta(days=1)], user=None)
    assert run_command("token_purge", "-v", "0").code == 0
    assert check().code == 0
    settings.TOKENOPS = {"BATCH_SIZE": 1}
    with connection.schema_editor() as editor:
        from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

        editor.delete_model(BlacklistedToken)
    try:
        make_tokens([utcnow() - timedelta(days=1)], user=None)
        assert run_command("token_purge").code == 1
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(BlacklistedToken)
    assert PurgeRun.objects.order_by("-started_at").first().outcome == "failed"
    assert check().code == 4


def test_an_error_is_exit_1_with_one_line_on_stderr(settings):
    settings.TOKENOPS = {"PURGE_WARN_AFTER": "soon"}
    result = check()
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("CommandError: TOKENOPS['PURGE_WARN_AFTER']: Invalid duration")
    assert result.err.count("\n") == 1


def test_a_recent_success_reads_no_token_table():
    make_tokens([utcnow() - timedelta(days=1)] * 3, user=None)
    recorded_run("ok", ago=timedelta(hours=1))
    with CaptureQueriesContext(connection) as queries:
        health = check_health(ReportRequest("default"))
    assert health.reason == "recent"
    touched = [q["sql"] for q in queries if "token_blacklist_" in q["sql"]]
    assert touched == []


def test_never_purged_reads_one_exists_query():
    make_tokens([utcnow() - timedelta(days=20)] * 3, user=None)
    with CaptureQueriesContext(connection) as queries:
        health = check_health(ReportRequest("default"))
    assert health.reason == "never"
    touched = [q["sql"] for q in queries if "token_blacklist_outstandingtoken" in q["sql"]]
    assert len(touched) == 1
    assert "LIMIT 1" in touched[0].upper()
    assert "COUNT(" not in touched[0].upper()
    assert "ORDER BY" not in touched[0].upper()


def test_a_complete_purge_records_where_it_left_the_table():
    make_tokens([utcnow() - timedelta(days=5)] * 2, user=None)  # purged
    kept = make_tokens([utcnow() - timedelta(hours=5), utcnow() + timedelta(days=1)], user=None)
    assert run_command("token_purge", "--older-than", "1d", "-v", "0").code == 0
    run = PurgeRun.objects.get()
    assert run.last_token_id == max(token.pk for token in kept)
    assert run.next_expiry == min(token.expires_at for token in kept)
    # A run cut short by its budget, and a dry run, vouch for nothing.
    make_tokens([utcnow() - timedelta(days=5)] * 3, user=None)
    assert run_command("token_purge", "--batch-size", "1", "--max-seconds", "0.000001").code == 0
    assert run_command("token_purge", "--dry-run").code == 0
    later = PurgeRun.objects.exclude(pk=run.pk).order_by("started_at")
    assert [(r.dry_run, r.complete, r.last_token_id, r.next_expiry) for r in later] == [
        (False, False, None, None),
        (True, False, None, None),
    ]


def test_a_stale_success_asks_only_the_rows_added_since_while_the_old_ones_are_safe():
    make_tokens([utcnow() - timedelta(days=1)], user=None)  # kept by --older-than 2d
    assert run_command("token_purge", "--older-than", "2d", "-v", "0").code == 0
    mark = PurgeRun.objects.get()
    PurgeRun.objects.update(finished_at=to_db(utcnow() - timedelta(days=20)))
    two_days = ReportRequest("default", older_than=timedelta(days=2))

    def outstanding_queries(request: ReportRequest) -> tuple[str, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            health = check_health(request)
        touched = [q["sql"] for q in queries if "token_blacklist_outstandingtoken" in q["sql"]]
        return health.reason, touched

    reason, touched = outstanding_queries(two_days)
    assert reason == "nothing"
    assert len(touched) == 1
    assert f"> {mark.last_token_id}" in touched[0]
    # A cutoff past the recorded earliest expiry: old rows may be purgeable, all are read.
    reason, touched = outstanding_queries(ReportRequest("default"))
    assert reason == "stale"
    assert len(touched) == 1
    assert f"> {mark.last_token_id}" not in touched[0]
    # A purgeable row added since the purge is found through the primary key.
    make_tokens([utcnow() - timedelta(days=3)], user=None)
    assert outstanding_queries(two_days)[0] == "stale"


def test_the_recorded_expiry_keeps_its_meaning_without_time_zone_support(settings):
    """USE_TZ=False: simplejwt's expires_at is naive UTC, the history naive local time."""
    settings.USE_TZ, settings.TIME_ZONE = False, "America/New_York"  # 5 h behind UTC
    make_tokens([utcnow() - timedelta(hours=22)], user=None)  # kept by --older-than 1d
    assert run_command("token_purge", "--older-than", "1d", "-v", "0").code == 0
    PurgeRun.objects.update(finished_at=to_db(utcnow() - timedelta(days=20)))
    # 20 h: the kept row is purgeable now. Read as New York time, the recorded expiry
    # would be 17 h ago, after this cutoff, and the old rows would go unread.
    health = check_health(ReportRequest("default", older_than=timedelta(hours=20)))
    assert health.reason == "stale"


def metrics(*args: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = run_command("token_report", "--format", "openmetrics", *args)
    assert (result.code, result.err) == (0, "")
    assert result.out.endswith("# EOF\n")
    samples = {}
    for family in text_string_to_metric_families(result.out):
        # Counters: the in-app sweeps' running totals (tokenops_sweep_deleted, _sweeps).
        counter = family.name in ("tokenops_sweep_deleted", "tokenops_sweeps")
        assert family.type == ("counter" if counter else "gauge")
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_parse_and_equal_the_json_counts():
    now = utcnow()
    make_tokens([now - timedelta(days=3)] * 3, blacklisted=[True, False, False], user=None)
    make_tokens([now + timedelta(days=1)] * 2, blacklisted=True, user=None)
    assert run_command("token_purge", "--older-than", "5d", "-v", "0").code == 0
    make_tokens([now - timedelta(seconds=10)], user=None)  # expired, inside LEEWAY? no: 0
    report = json.loads(run_command("token_report", "--format", "json").out)
    samples = metrics()
    for table in ("outstanding", "blacklisted"):
        for state in ("total", "active", "expired", "purgeable"):
            key = ("tokenops_tokens", (("state", state), ("table", table)))
            assert samples[key] == report[table][state], key
    last = PurgeRun.objects.get()
    assert samples[("tokenops_last_success_timestamp_seconds", ())] == pytest.approx(
        last.finished_at.timestamp()
    )
    assert samples[("tokenops_last_run_deleted", (("table", "outstanding"),))] == 0
    assert samples[("tokenops_last_run_deleted", (("table", "blacklisted"),))] == 0
    assert samples[("tokenops_last_run_seconds", ())] >= 0
    assert samples[("tokenops_purge_overdue", ())] == 0
    assert samples[("tokenops_purge_running", ())] == 0
    assert samples[("tokenops_purge_attention", ())] == 0

    assert run_command("token_purge", "-v", "0").code == 0
    samples = metrics()
    deleted = PurgeRun.objects.order_by("-started_at").first()
    assert samples[("tokenops_last_run_deleted", (("table", "outstanding"),))] == (
        deleted.outstanding_deleted
    )
    assert deleted.outstanding_deleted == 4


def test_metrics_without_history_and_with_a_database_label():
    make_tokens([utcnow() - timedelta(days=20)], user=None)
    recorded_run("running", ago=timedelta(seconds=5))
    PurgeRun.objects.update(finished_at=None)
    samples = metrics("--database", "default")
    assert ("tokenops_last_success_timestamp_seconds", (("database", "default"),)) not in samples
    assert samples[("tokenops_purge_overdue", (("database", "default"),))] == 1
    assert samples[("tokenops_purge_running", (("database", "default"),))] == 1
    key = (
        "tokenops_tokens",
        (("database", "default"), ("state", "purgeable"), ("table", "outstanding")),
    )
    assert samples[key] == 1
