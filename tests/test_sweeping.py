"""In-app sweeps (issue 15): real logins and refreshes through the example project delete
purgeable rows after their commit, never an acceptable one, never fail the request."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, close_old_connections, connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from my_bathhouse_backend.settings import SIMPLE_JWT
from tests.simplejwt_compat import HAS_OUTSTAND
from tests.utils import (
    dropped,
    login,
    make_tokens,
    refresh,
    run_command,
    snapshot,
    stored,
    utcnow,
)
from tokenops import sweeping
from tokenops.app_settings import get_settings
from tokenops.dbtime import to_db
from tokenops.errors import TokenopsError
from tokenops.locking import purge_lock, purge_running, sqlite_lock_path
from tokenops.models import PurgeRun, SweepTally
from tokenops.operations import ATTENTION_STALE, HEALTHY_SWEPT, ReportRequest, check_health
from tokenops.purging import Deleted

pytestmark = pytest.mark.django_db(transaction=True)

SLIDING_CLASSES = ("rest_framework_simplejwt.tokens.SlidingToken",)
# Alice's login as a JSON body, for the requests sent without Django's test client.
LOGIN_BODY = json.dumps({"username": "alice", "password": "pw"})


@pytest.fixture
def alice() -> None:
    get_user_model()._default_manager.create_user("alice", password="pw")


def ids(tokens: list[OutstandingToken]) -> set[int]:
    return {token.pk for token in tokens}


def remaining() -> set[int]:
    return set(OutstandingToken.objects.values_list("pk", flat=True))


def blacklisted_ids() -> set[int]:
    return set(BlacklistedToken.objects.values_list("token_id", flat=True))


def test_a_login_deletes_dead_rows_and_their_blacklist_rows(alice, sweeps_on):
    now = utcnow()
    dead = make_tokens([now - timedelta(days=3)] * 6, blacklisted=[True, False] * 3)
    live = make_tokens([now + timedelta(days=1)] * 2, blacklisted=[True, False])
    response = login(Client())
    assert response.status_code == 200
    left = remaining()
    assert not left & ids(dead)
    assert ids(live) <= left
    assert len(left) == 3  # the live pair and the new refresh token
    assert blacklisted_ids() == {live[0].pk}
    tally = SweepTally.objects.get()
    assert (tally.outstanding_deleted, tally.blacklisted_deleted, tally.sweeps) == (6, 3, 1)


def test_a_refresh_with_rotation_sweeps_too(alice, settings):
    client = Client()
    token = login(client).json()["refresh"]
    now = utcnow()
    dead = make_tokens([now - timedelta(days=3)] * 4, blacklisted=True)
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_PROBABILITY": 1.0}
    sweeping.reset_state()
    response = refresh(client, token)
    assert response.status_code == 200
    if not HAS_OUTSTAND:
        # simplejwt < 5.5 writes no OutstandingToken for the rotated token: nothing to hook.
        assert remaining() >= ids(dead)
        assert OutstandingToken.objects.count() == 5
        return
    assert not remaining() & ids(dead)
    # The rotated token is blacklisted and alive: it stays, with its blacklist row.
    assert OutstandingToken.objects.count() == 2
    assert BlacklistedToken.objects.count() == 1


def _new_token() -> OutstandingToken:
    """One token saved the way simplejwt saves it (post_save, then its commit)."""
    return OutstandingToken.objects.create(
        user=get_user_model()._default_manager.get(username="alice"),
        jti=uuid.uuid4().hex,
        token="header.payload.signature",
        created_at=stored(utcnow()),
        expires_at=stored(utcnow() + timedelta(days=1)),
    )


def test_inside_a_request_the_sweep_waits_for_its_end_once_per_database(alice, sweeps_on, settings):
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_MAX_ROWS": 2}
    dead = sorted(ids(make_tokens([utcnow() - timedelta(days=3)] * 6, blacklisted=True)))
    request_started.send(sender=None)
    for _ in range(3):
        _new_token()
    assert set(dead) <= remaining()  # committed, yet no sweep so far
    request_finished.send(sender=None)
    # One sweep of 2 rows for the three tokens, the oldest first.
    assert remaining() & set(dead) == set(dead[2:])
    assert BlacklistedToken.objects.count() == 4
    assert SweepTally.objects.get().sweeps == 1
    # Outside a request the sweep runs at the commit.
    _new_token()
    assert remaining() & set(dead) == set(dead[4:])


def test_sweeps_of_a_request_whose_end_never_came_wait_for_the_next_end(alice, sweeps_on):
    dead = make_tokens([utcnow() - timedelta(days=3)] * 2)
    request_started.send(sender=None)
    _new_token()
    request_started.send(sender=None)  # the first request's end was never signalled
    assert ids(dead) <= remaining()
    request_finished.send(sender=None)
    assert not remaining() & ids(dead)


def _finished_receivers() -> list[object]:
    return [ref() for _key, ref, *_rest in request_finished.receivers]


@pytest.fixture
def receivers_as_at_start() -> list[object]:
    """request_finished's receivers as a served process has them: Django's
    close_old_connections connected first (at import), then the app's ready()."""
    request_finished.disconnect(dispatch_uid=f"{sweeping.DISPATCH_UID}.finished")
    request_finished.disconnect(close_old_connections)
    request_finished.connect(close_old_connections)
    sweeping.connect()
    return _finished_receivers()


def test_the_sweep_runs_before_django_closes_the_request_s_connection(receivers_as_at_start):
    order = receivers_as_at_start
    assert order.index(sweeping.on_request_finished) < order.index(close_old_connections)


def test_a_project_that_turned_close_old_connections_off_keeps_it_off():
    request_finished.disconnect(close_old_connections)
    try:
        sweeping.connect()
        assert close_old_connections not in _finished_receivers()
        assert sweeping.on_request_finished in _finished_receivers()
    finally:
        request_finished.connect(close_old_connections)


def test_without_sweep_after_response_a_request_sweeps_at_the_commit(alice, sweeps_on, settings):
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_AFTER_RESPONSE": False}
    dead = make_tokens([utcnow() - timedelta(days=3)] * 4)
    request_started.send(sender=None)
    try:
        _new_token()
        assert not remaining() & ids(dead)
    finally:
        request_finished.send(sender=None)
    assert SweepTally.objects.get().sweeps == 1


@pytest.mark.parametrize("max_age", [0, None])
def test_a_deferred_sweep_uses_the_request_s_connection_then_django_closes_it(
    alice, sweeps_on, monkeypatch, receivers_as_at_start, max_age
):
    dead = make_tokens([utcnow() - timedelta(days=3)] * 2)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", max_age)
    connection.close()
    request_started.send(sender=None)
    _new_token()
    used = connection.connection
    assert used is not None
    seen: list[object] = []

    def spy(execute, sql, params, many, context):
        seen.append(context["connection"].connection)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        request_finished.send(sender=None)
    assert seen  # the sweep ran, on the request's connection, not on a new one
    assert all(raw is used for raw in seen)
    assert (connection.connection is used) is (max_age is None)
    assert not remaining() & ids(dead)


def test_a_sweep_that_finds_the_connection_closed_closes_what_it_opened(alice, sweeps_on):
    dead = make_tokens([utcnow() - timedelta(days=3)] * 2)
    request_started.send(sender=None)
    _new_token()
    connection.close()
    sweeping.on_request_finished()
    assert connection.connection is None
    assert not remaining() & ids(dead)


@contextmanager
def _tally_table_locked() -> Iterator[None]:
    """Another connection holds SweepTally's table: a sweep's tally update waits for it."""
    held, release = threading.Event(), threading.Event()
    table = connection.ops.quote_name(SweepTally._meta.db_table)

    def hold() -> None:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with transaction.atomic():
                    cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
                    held.set()
                    assert release.wait(30)
            else:
                cursor.execute(f"LOCK TABLES {table} WRITE")
                held.set()
                assert release.wait(30)
                cursor.execute("UNLOCK TABLES")

    thread, outcome = _in_thread(hold)
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        thread.join(30)
    assert "error" not in outcome, outcome


def _post_login(url: str, timeout: float) -> int | None:
    """A login over real HTTP; its status, or None when no response came in ``timeout``."""
    parts = urlsplit(url)
    http = HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        http.request(
            "POST",
            "/api/token/",
            LOGIN_BODY,
            {"Content-Type": "application/json"},
        )
        response = http.getresponse()
        response.read()  # the whole body: a server could hold its end back
        return response.status
    except TimeoutError:
        return None
    finally:
        http.close()


@pytest.mark.parametrize("after_response", [True, False])
def test_over_http_the_login_answers_before_its_sweep_ends(
    alice, sweeps_on, settings, live_server, after_response
):
    _server_only()
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_AFTER_RESPONSE": after_response}
    dead = make_tokens([utcnow() - timedelta(days=3)] * 5)
    with _tally_table_locked():
        # The sweep deletes the rows, then waits to count them in the tally.
        status = _post_login(live_server.url, timeout=15 if after_response else 2)
    assert status == (200 if after_response else None)
    deadline = time.monotonic() + 10
    while not SweepTally.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert SweepTally.objects.get().sweeps == 1
    assert not remaining() & ids(dead)


def test_under_asgi_the_sweep_runs_after_the_response_body_was_sent(alice, sweeps_on):
    dead = make_tokens([utcnow() - timedelta(days=3)] * 4)
    body = LOGIN_BODY.encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/token/",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"host", b"localhost"),
        ],
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[tuple[str, object, int]] = []

    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays connected (cancelled at the end)
        raise AssertionError("unreachable")

    async def send(message: dict[str, object]) -> None:
        # What is left of the dead rows when each message goes out.
        left = len(await sync_to_async(remaining)() & ids(dead))
        sent.append((str(message["type"]), message.get("status"), left))

    asyncio.run(get_asgi_application()(scope, receive, send))
    assert sent == [("http.response.start", 200, 4), ("http.response.body", None, 4)]
    assert not remaining() & ids(dead)
    assert SweepTally.objects.get().sweeps == 1


def test_one_sweep_deletes_at_most_sweep_max_rows_oldest_first(alice, sweeps_on, settings):
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_MAX_ROWS": 5}
    dead = make_tokens([utcnow() - timedelta(days=3)] * 12, blacklisted=True)
    client = Client()
    deleted = []
    for _ in range(4):
        before = remaining()
        assert login(client).status_code == 200
        deleted.append(sorted(before - remaining()))
    pks = sorted(ids(dead))
    assert deleted == [pks[:5], pks[5:10], pks[10:], []]
    assert BlacklistedToken.objects.count() == 0


def test_sweeps_keep_tokens_inside_the_leeway(alice, sweeps_on, settings):
    settings.SIMPLE_JWT = {**SIMPLE_JWT, "LEEWAY": 3600}
    now = utcnow()
    accepted = make_tokens([now - timedelta(minutes=30)] * 3, blacklisted=True)
    dead = make_tokens([now - timedelta(hours=2)] * 3, blacklisted=True)
    assert login(Client()).status_code == 200
    assert ids(accepted) <= remaining()
    assert not remaining() & ids(dead)
    assert blacklisted_ids() == ids(accepted)


def test_sweeps_keep_sliding_tokens_that_can_still_be_refreshed(alice, sweeps_on, settings):
    settings.SIMPLE_JWT = {
        **SIMPLE_JWT,
        "AUTH_TOKEN_CLASSES": SLIDING_CLASSES,
        "SLIDING_TOKEN_REFRESH_LIFETIME": timedelta(days=1),
    }
    now = utcnow()
    refreshable = make_tokens([now - timedelta(hours=12)] * 2, blacklisted=True)
    dead = make_tokens([now - timedelta(days=2)] * 2, blacklisted=True)
    assert login(Client()).status_code == 200
    assert ids(refreshable) <= remaining()
    assert not remaining() & ids(dead)


def test_sweeps_compare_naive_utc_when_use_tz_is_false(alice, sweeps_on, settings):
    # simplejwt stores naive UTC; a local-time comparison 5 hours off would be wrong.
    settings.USE_TZ = False
    settings.TIME_ZONE = "America/New_York"
    now = utcnow()
    accepted = make_tokens([now + timedelta(hours=2)] * 2)
    dead = make_tokens([now - timedelta(hours=2)] * 2)
    assert login(Client()).status_code == 200
    assert ids(accepted) <= remaining()
    assert not remaining() & ids(dead)
    assert stored(now).tzinfo is None


@pytest.mark.parametrize("probability", [None, 0, 0.0])
def test_sweeps_off_change_nothing(alice, settings, probability):
    tokenops = {k: v for k, v in settings.TOKENOPS.items() if k != "SWEEP_PROBABILITY"}
    if probability is not None:
        tokenops["SWEEP_PROBABILITY"] = probability
    settings.TOKENOPS = tokenops
    make_tokens([utcnow() - timedelta(days=3)] * 4, blacklisted=True)
    outstanding, blacklisted = snapshot()
    assert login(Client()).status_code == 200
    after_outstanding, after_blacklisted = snapshot()
    assert after_outstanding[:-1] == outstanding
    assert len(after_outstanding) == len(outstanding) + 1
    assert after_blacklisted == blacklisted
    assert SweepTally.objects.count() == 0


def test_a_failing_tally_leaves_the_login_successful_and_logs_one_line(alice, sweeps_on, caplog):
    make_tokens([utcnow() - timedelta(days=3)] * 4)
    client = Client()
    with caplog.at_level(logging.WARNING, logger="tokenops"), dropped(SweepTally):
        first = login(client)
        make_tokens([utcnow() - timedelta(days=3)] * 2)
        second = login(client)
    assert (first.status_code, second.status_code) == (200, 200)
    lines = [r.getMessage() for r in caplog.records if r.name == "tokenops"]
    assert len(lines) == 1
    assert lines[0].startswith("in-app token sweep on 'default' failed: ")
    # The tokens went all the same: only the tally was lost.
    assert OutstandingToken.objects.count() == 2


def test_a_failing_lock_check_leaves_the_login_successful(alice, sweeps_on, caplog, monkeypatch):
    dead = make_tokens([utcnow() - timedelta(days=3)] * 2)
    if connection.vendor == "sqlite":
        # A directory where the lock file should be: opening it fails for real.
        path = sqlite_lock_path("default")
        assert path is not None
        path.unlink(missing_ok=True)
        path.mkdir()
    else:

        def broken(using: str) -> bool:
            raise DatabaseError("lock check failed")

        monkeypatch.setattr(sweeping, "purge_running", broken)
    try:
        with caplog.at_level(logging.WARNING, logger="tokenops"):
            responses = [login(Client()).status_code for _ in range(3)]
    finally:
        if connection.vendor == "sqlite":
            Path(path).rmdir()
    assert responses == [200, 200, 200]
    assert len([r for r in caplog.records if r.name == "tokenops"]) == 1
    assert ids(dead) <= remaining()


def test_a_bad_sweep_setting_is_logged_and_the_login_succeeds(alice, settings, caplog):
    sweeping.reset_state()
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_PROBABILITY": 2}
    with caplog.at_level(logging.WARNING, logger="tokenops"):
        assert login(Client()).status_code == 200
    (record,) = [r for r in caplog.records if r.name == "tokenops"]
    assert "SWEEP_PROBABILITY" in record.getMessage()


def test_sweeps_step_aside_while_a_purge_holds_the_lock(alice, sweeps_on):
    dead = make_tokens([utcnow() - timedelta(days=3)] * 3, blacklisted=True)
    client = Client()
    with purge_lock("default") as held:
        assert held
        assert purge_running("default")
        assert sweeping.sweep("default").skipped == sweeping.SKIPPED_PURGE
        assert login(client).status_code == 200
        assert ids(dead) <= remaining()
    assert not purge_running("default")
    assert login(client).status_code == 200
    assert not remaining() & ids(dead)


def test_a_purge_is_not_refused_because_a_sweep_looked_at_its_lock(alice, sweeps_on):
    # The SQLite probe takes the lock file for an instant; purges look twice.
    for _ in range(20):
        assert not purge_running("default")
        with purge_lock("default") as held:
            assert held


def test_a_window_without_purgeable_rows_moves_the_next_sweep_up(alice, sweeps_on, settings):
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_MAX_ROWS": 3}
    now = utcnow()
    long_lived = make_tokens([now + timedelta(days=300)] * 3)
    dead = make_tokens([now - timedelta(days=3)] * 4)
    conf = get_settings()
    first = sweeping.sweep("default", conf=conf)
    second = sweeping.sweep("default", conf=conf)
    third = sweeping.sweep("default", conf=conf)
    fourth = sweeping.sweep("default", conf=conf)
    assert [r.deleted.outstanding for r in (first, second, third, fourth)] == [0, 3, 1, 0]
    assert remaining() == ids(long_lived)
    assert not remaining() & ids(dead)


def test_the_report_the_metrics_and_the_check_show_sweeps(alice, sweeps_on):
    make_tokens([utcnow() - timedelta(days=3)] * 5, blacklisted=[True, True, False, False, False])
    assert login(Client()).status_code == 200
    assert sweeping.sweep_totals("default", hours=24) == sweeping.SweepTotals(5, 2, 1)
    text = run_command("token_report")
    assert text.code == 0, text.err
    assert "In-app sweeps removed 5 tokens in the last 24 h" in text.out
    data = json.loads(run_command("token_report", "--format", "json").out)
    sweeps = data["sweeps"]
    assert sweeps.pop("last_swept").endswith(":00:00+00:00")
    assert sweeps == {
        "enabled": True,
        "probability": 1.0,
        "max_rows": 100,
        "last_24h": {"outstanding": 5, "blacklisted": 2, "sweeps": 1},
        "total": {"outstanding": 5, "blacklisted": 2, "sweeps": 1},
        "error": "",
    }
    metrics = run_command("token_report", "--format", "openmetrics").out
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    samples = {s.labels.get("table"): s.value for s in families["tokenops_sweep_deleted"].samples}
    assert samples == {"outstanding": 5, "blacklisted": 2}
    assert families["tokenops_sweeps"].samples[0].value == 1


def test_the_report_says_when_sweeps_are_off(settings):
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_PROBABILITY": 0}
    text = run_command("token_report")
    assert "In-app sweeps are off." in text.out
    data = json.loads(run_command("token_report", "--format", "json").out)
    assert data["sweeps"]["enabled"] is False


def test_check_counts_recent_sweeps_as_upkeep(alice, sweeps_on, settings):
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_MAX_ROWS": 2}
    now = utcnow()
    old = to_db(now - timedelta(days=30))
    PurgeRun.objects.create(
        started_at=old,
        finished_at=old,
        heartbeat_at=old,
        trigger=PurgeRun.Trigger.COMMAND,
        database="default",
        outcome=PurgeRun.Outcome.OK,
    )
    make_tokens([now - timedelta(days=1)] * 4)
    # Stale: the last purge is 30 days old, tokens are purgeable, no sweep yet.
    assert check_health(ReportRequest()).reason == ATTENTION_STALE
    assert login(Client()).status_code == 200  # sweeps 2 of the 4
    health = check_health(ReportRequest())
    assert (health.reason, health.attention) == (HEALTHY_SWEPT, False)
    assert run_command("token_report", "--check").code == 0
    # A purgeable token that expired more than PURGE_WARN_AFTER ago: sweeps fall behind.
    make_tokens([now - timedelta(days=20)])
    assert check_health(ReportRequest()).reason == ATTENTION_STALE


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SWEEP_PROBABILITY", -0.1),
        ("SWEEP_PROBABILITY", 1.5),
        ("SWEEP_PROBABILITY", "0.5"),
        ("SWEEP_PROBABILITY", True),
        ("SWEEP_PROBABILITY", float("nan")),
        ("SWEEP_MAX_ROWS", 0),
        ("SWEEP_MAX_ROWS", 10_001),
        ("SWEEP_MAX_ROWS", True),
        ("SWEEP_MAX_ROWS", 5.0),
        ("SWEEP_AFTER_RESPONSE", 1),
        ("SWEEP_AFTER_RESPONSE", "False"),
    ],
)
def test_bad_sweep_settings_are_refused(settings, key, value):
    settings.TOKENOPS = {key: value}
    with pytest.raises(TokenopsError, match=rf"TOKENOPS\['{key}'\] must be"):
        get_settings()


def test_sweep_settings_are_read(settings):
    settings.TOKENOPS = {"SWEEP_PROBABILITY": 1, "SWEEP_MAX_ROWS": 10_000}
    conf = get_settings()
    assert (conf.sweep_probability, conf.sweep_max_rows) == (1.0, 10_000)
    assert conf.sweep_after_response is True
    settings.TOKENOPS = {"SWEEP_AFTER_RESPONSE": False}
    assert get_settings().sweep_after_response is False


def test_sqlite_sweeps_skip_when_another_connection_writes(alice, sweeps_on, sqlite_file):
    dead = make_tokens([utcnow() - timedelta(days=3)] * 3)
    with closing(sqlite3.connect(sqlite_file, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # holds SQLite's one write lock
        started = time.monotonic()
        result = sweeping.sweep("default")
        elapsed = time.monotonic() - started
        other.execute("ROLLBACK")
    assert result.skipped == sweeping.SKIPPED_BUSY
    assert elapsed < 1  # Django's own busy timeout is 5 s
    assert ids(dead) <= remaining()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 5000  # put back
    assert sweeping.sweep("default").deleted.outstanding == 3


def _server_only() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no row locks: one writer at a time (tested above)")


def _in_thread(target, *args):
    """Run ``target`` in a thread with its own connection; its result or exception."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = target(*args)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_sweep_skips_rows_another_sweep_holds_and_does_not_wait(alice, sweeps_on, caplog):
    _server_only()
    caplog.set_level(logging.DEBUG, logger="tokenops")
    dead = sorted(ids(make_tokens([utcnow() - timedelta(days=3)] * 40, blacklisted=True)))
    held, release = threading.Event(), threading.Event()

    def hold_candidates() -> None:
        # What a sweep's transaction holds: its candidate rows, locked; and one blacklist
        # row being deleted (a purge's first statement) for a token it did not lock.
        with transaction.atomic():
            # One primary-key lookup a row: a range or an IN list may be planned as a scan
            # that locks every row it meets (MariaDB did, once earlier tests had grown the
            # table's statistics: all 40 rows were then held and the sweep rightly took none).
            for pk in dead[:4]:
                OutstandingToken.objects.select_for_update().get(pk=pk)
            BlacklistedToken.objects.filter(token_id=dead[4]).delete()
            held.set()
            assert release.wait(30)

    thread, outcome = _in_thread(hold_candidates)
    try:
        assert held.wait(10)
        started = time.monotonic()
        assert login(Client()).status_code == 200
        elapsed = time.monotonic() - started
        # The rows the other transaction holds are still there; every other one is gone.
        assert remaining() >= set(dead[:5])
        assert not remaining() & set(dead[5:]), caplog.messages
    finally:
        release.set()
        thread.join(30)
    assert "error" not in outcome, outcome
    assert elapsed < 5  # a wait would last innodb_lock_wait_timeout (50 s) or forever
    assert login(Client()).status_code == 200
    assert not remaining() & set(dead)


def test_two_concurrent_sweeps_never_block_each_other(alice, sweeps_on, settings):
    _server_only()
    # One window holds every row: both sweeps want the same rows at the same moment.
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_MAX_ROWS": 300}
    make_tokens([utcnow() - timedelta(days=3)] * 300, blacklisted=[True, False] * 150)
    barrier = threading.Barrier(2)

    def sweep_after_barrier():
        barrier.wait(10)
        started = time.monotonic()
        with transaction.atomic():
            # Both hold their transaction open a moment, so they really overlap.
            result = sweeping.sweep("default")
            swept = time.monotonic() - started
            time.sleep(0.3)
        return result, swept

    first = _in_thread(sweep_after_barrier)
    second = _in_thread(sweep_after_barrier)
    for thread, _outcome in (first, second):
        thread.join(30)
    outcomes = [
        outcome.get("result") or outcome.get("error") for _thread, outcome in (first, second)
    ]
    assert all(isinstance(o, tuple) for o in outcomes), outcomes
    # Each row went to exactly one of them; neither waited for the other's locks (the
    # tally row aside: the second increments it after the first's commit, 0.3 s at most).
    assert sum(result.deleted.outstanding for result, _swept in outcomes) == 300
    assert all(swept < 3 for _result, swept in outcomes), outcomes
    assert OutstandingToken.objects.count() == 0
    assert BlacklistedToken.objects.count() == 0


@contextmanager
def _stats_say_one_row(*tables: str) -> Iterator[None]:
    """Make InnoDB's persistent statistics say each table holds one row, as after earlier
    tests emptied them: the optimizer then plans an ``IN`` list as a scan (CI met it).
    Real statistics are computed again afterwards (ANALYZE TABLE)."""
    quoted = [connection.ops.quote_name(table) for table in tables]
    with connections["default"].cursor() as cursor:
        for table, name in zip(tables, quoted, strict=True):
            cursor.execute(
                "UPDATE mysql.innodb_table_stats SET n_rows = 1, clustered_index_size = 1, "
                "sum_of_other_index_sizes = 1 "
                "WHERE database_name = DATABASE() AND table_name = %s",
                [table],
            )
            cursor.execute(
                "UPDATE mysql.innodb_index_stats SET stat_value = 1 "
                "WHERE database_name = DATABASE() AND table_name = %s",
                [table],
            )
            cursor.execute(f"FLUSH TABLES {name}")
    try:
        yield
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute(f"ANALYZE TABLE {', '.join(quoted)}")
            cursor.fetchall()


def test_a_sweep_locks_and_deletes_rows_by_index_never_by_scan(alice, sweeps_on):
    # Under READ COMMITTED InnoDB locks each row a locking statement scans before it tests
    # the WHERE: a sweep scanning the blacklist briefly held other sweeps' rows, which
    # those (SKIP LOCKED) then left behind (CI: 214 of 300 deleted by two sweeps).
    if connection.vendor != "mysql":
        pytest.skip("InnoDB's locking reads")
    make_tokens([utcnow() - timedelta(days=3)] * 40, blacklisted=True)
    tables = (BlacklistedToken._meta.db_table, OutstandingToken._meta.db_table)
    with _stats_say_one_row(*tables), CaptureQueriesContext(connection) as captured:
        result = sweeping.sweep("default")
    assert result.deleted == Deleted(outstanding=40, blacklisted=40)
    locking = [
        q["sql"]
        for q in captured.captured_queries
        if "FOR UPDATE" in q["sql"] or q["sql"].startswith("DELETE")
    ]
    assert len(locking) == 4, locking  # two locking selects, two deletes
    scans = []
    with connection.cursor() as cursor:
        for sql in locking:
            cursor.execute(f"EXPLAIN {sql}")
            columns = [c[0] for c in cursor.description]
            plan = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            # ALL reads the table, index the whole of one index: both meet others' rows.
            scans += [
                (sql[:60], step["table"], step["type"])
                for step in plan
                if step["type"] in ("ALL", "index") and not str(step["table"]).startswith("<")
            ]
    assert scans == []


def test_the_schedule_hint_offers_sweeps_as_the_option_without_a_scheduler(settings):
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_PROBABILITY": 0.1}
    result = run_command("token_schedule_hint", "--platform", "linux")
    assert "== No scheduler at all: in-app sweeps ==" in result.out
    assert "In-app sweeps are on (SWEEP_PROBABILITY 0.1) here." in result.out
