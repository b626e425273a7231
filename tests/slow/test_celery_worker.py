"""The purge task on a real broker: a Celery worker and beat process, Redis, a SQLite file.

The worker (``celery -A my_bathhouse_backend worker --pool=solo``), beat (with the
project's DatabaseScheduler) and the test all open the same SQLite file. Each test uses
a queue of its own on the Redis database TOKENOPS_TEST_REDIS_URL names (default
``redis://127.0.0.1:6379/7``), so parallel runs never take each other's tasks. A Redis
that does not answer fails the tests; it never skips them.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests.slow.celery_processes import (
    REDIS_URL,
    START_TIMEOUT,
    CeleryProcess,
    celery_env,
    start_celery,
)
from tests.utils import ROOT, run_manage, utcnow, wait_until

pytestmark = pytest.mark.slow

# Literal names, not tokenops' constants: users' beat tables and workers store these.
TASK = "tokenops.tasks.purge_expired_tokens"
PERIODIC_TASK = "tokenops: purge expired tokens"
RESULT_TIMEOUT = 60.0
BEAT_TIMEOUT = 90.0
INSTALL = ("token_schedule_hint", "--platform", "celery", "--install", "--older-than", "1d")


def manage_on(database: Path, *args: str) -> subprocess.CompletedProcess:
    """``python manage.py <args>`` of the example project on ``database`` and Redis."""
    return run_manage(*args, env=celery_env(database), timeout=120)


def stamp(moment: datetime) -> str:
    """A datetime as Django stores it in SQLite with USE_TZ: naive UTC text."""
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(" ", timespec="microseconds")


def insert_tokens(database: Path, expiries: Iterable[datetime], *, blacklisted: bool) -> set[str]:
    """Insert OutstandingToken rows (and their blacklist rows) in the file; return their jtis.

    Plain sqlite3: the file is the worker's, not this test process's Django database.
    """
    now = stamp(utcnow())
    made = set()
    with closing(sqlite3.connect(database)) as connection, connection:
        for expires in expiries:
            jti = uuid.uuid4().hex
            cursor = connection.execute(
                "INSERT INTO token_blacklist_outstandingtoken "
                "(token, created_at, expires_at, user_id, jti) VALUES (?, ?, ?, NULL, ?)",
                ("header.payload.signature", now, stamp(expires), jti),
            )
            if blacklisted:
                connection.execute(
                    "INSERT INTO token_blacklist_blacklistedtoken (blacklisted_at, token_id) "
                    "VALUES (?, ?)",
                    (now, cursor.lastrowid),
                )
            made.add(jti)
    return made


def query(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute(sql, params).fetchall()


def jtis(database: Path) -> set[str]:
    return {row[0] for row in query(database, "SELECT jti FROM token_blacklist_outstandingtoken")}


def blacklisted_count(database: Path) -> int:
    return query(database, "SELECT COUNT(*) FROM token_blacklist_blacklistedtoken")[0][0]


def tables(database: Path) -> set[str]:
    rows = query(database, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row[0] for row in rows}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed for the Celery tests: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test works on a copy."""
    path = tmp_path_factory.mktemp("celery-template") / "migrated.sqlite3"
    done = manage_on(path, "migrate", "--verbosity", "0")
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def database(migrated_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "shared.sqlite3"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def queue(redis_server: redis.Redis) -> Iterator[str]:
    name = f"tokenops-test-{uuid.uuid4().hex[:12]}"
    yield name
    for key in redis_server.scan_iter(match=f"*{name}*"):
        redis_server.delete(key)


@pytest.fixture
def client(redis_server: redis.Redis) -> Iterator[Celery]:
    """The sending side: a bare Celery app on the same broker, no Django involved."""
    app = Celery("tokenops-tests", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[CeleryProcess]]:
    """Everything started here is stopped at teardown, whatever the test did."""
    started: list[CeleryProcess] = []
    yield started
    for process in reversed(started):
        process.stop()


@pytest.fixture
def start_worker(
    processes: list[CeleryProcess], queue: str, tmp_path: Path
) -> Callable[..., CeleryProcess]:
    def start(database: Path, pool: str = "solo") -> CeleryProcess:
        worker = start_celery(
            "worker",
            [
                f"--pool={pool}",
                "--concurrency=1",
                "--loglevel=INFO",
                f"--queues={queue}",
                f"--hostname={queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            database,
            tmp_path,
        )
        processes.append(worker)
        worker.wait_for_log(" ready.", START_TIMEOUT)
        return worker

    return start


def seed(database: Path) -> tuple[set[str], set[str]]:
    """Three rows purgeable with older_than 1d (two blacklisted); four kept (two blacklisted)."""
    now = utcnow()
    old = insert_tokens(database, [now - timedelta(days=3)] * 2, blacklisted=True)
    old |= insert_tokens(database, [now - timedelta(days=3)], blacklisted=False)
    kept = insert_tokens(database, [now - timedelta(hours=2)], blacklisted=True)
    kept |= insert_tokens(database, [now - timedelta(hours=2)], blacklisted=False)
    kept |= insert_tokens(database, [now + timedelta(days=7)], blacklisted=True)
    kept |= insert_tokens(database, [now + timedelta(days=7)], blacklisted=False)
    return old, kept


def test_task_sent_through_redis_purges_exactly_the_purgeable_rows(
    database, start_worker, client, queue
):
    _purged, kept = seed(database)
    worker = start_worker(database)

    result = client.send_task(TASK, kwargs={"older_than": "1d"}, queue=queue)
    value = result.get(timeout=RESULT_TIMEOUT)

    assert result.state == "SUCCESS"
    assert value["dry_run"] is False
    assert value["older_than_seconds"] == 86400
    assert value["before"] == {"outstanding": 7, "blacklisted": 4}
    assert value["purgeable"] == {"outstanding": 3, "blacklisted": 2}
    assert value["deleted"] == {"outstanding": 3, "blacklisted": 2}
    assert value["after"] == {"outstanding": 4, "blacklisted": 2}
    assert jtis(database) == kept
    assert blacklisted_count(database) == 2
    assert result.name == TASK
    assert result.retries == 0
    worker.wait_for_log(f"Task {TASK}[{result.id}] succeeded", 10)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="Celery has no soft time limit here")
def test_a_soft_time_limit_on_a_prefork_worker_ends_the_purge_in_order(
    database, start_worker, client, queue
):
    """The pool sends SIGUSR1 to its child at the soft limit; the purge stops after a batch."""
    now = utcnow()
    insert_tokens(database, [now - timedelta(days=3)] * 200, blacklisted=True)
    insert_tokens(database, [now - timedelta(days=3)] * 200, blacklisted=False)
    worker = start_worker(database, pool="prefork")

    # batch_size 4: 100 batches with SQLite's 0.1 s pause after each, well past 1 s.
    result = client.send_task(
        TASK,
        kwargs={"older_than": "1d", "batch_size": 4},
        queue=queue,
        soft_time_limit=1,
        time_limit=60,
    )
    value = result.get(timeout=RESULT_TIMEOUT)

    left = query(
        database,
        "SELECT (SELECT COUNT(*) FROM token_blacklist_outstandingtoken), "
        "(SELECT COUNT(*) FROM token_blacklist_blacklistedtoken)",
    )[0]
    assert result.state == "SUCCESS"
    assert value["complete"] is False
    assert value["remaining"] == {"outstanding": left[0], "blacklisted": left[1]}
    assert 0 < left[0] < 400
    assert value["deleted"] == {"outstanding": 400 - left[0], "blacklisted": 200 - left[1]}
    assert query(
        database,
        "SELECT outcome, complete, outstanding_deleted, blacklisted_deleted FROM tokenops_purgerun",
    ) == [("ok", 0, 400 - left[0], 200 - left[1])]
    worker.wait_for_log(f"Task {TASK}[{result.id}] succeeded", 10)
    log = worker.log()
    assert "token purge task on 'default' reached its soft time limit" in log
    assert "Traceback" not in log


# The web side of the admin's "Purge now" with TOKENOPS["ADMIN_PURGE"] = "celery": the
# example project's Celery app, routed to the test's queue, and Django's test client.
ADMIN_CLICK = """
import json, os, re, sys
import django
django.setup()
from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
settings.TOKENOPS = {**settings.TOKENOPS, "ADMIN_PURGE": "celery"}
current_app.conf.task_routes = {sys.argv[1]: {"queue": sys.argv[2]}}
user = get_user_model().objects.create_superuser("olga", "olga@example.com", "pw")
client = Client()
client.force_login(user)
page = "/admin/tokenops/tokenhygiene/purge/"
signed = re.search(r'name="cutoff" value="([^"]+)"', client.get(page).content.decode())[1]
response = client.post(page, {"confirm": "yes", "cutoff": signed})
from tokenops.admin import confirmed_cutoff
cutoff = confirmed_cutoff("default", signed).isoformat(" ", timespec="microseconds")
print(json.dumps({"status": response.status_code, "cutoff": cutoff[:26]}))
"""


def test_the_admin_page_sends_its_purge_to_the_worker(database, start_worker, queue):
    """ "Purge now" with Celery: the click answers, the worker purges with the confirmed cutoff."""
    _purged, kept = seed(database)
    start_worker(database)
    env = {**celery_env(database), "DJANGO_ALLOWED_HOSTS": "testserver"}
    clicked = subprocess.run(
        [sys.executable, "-c", ADMIN_CLICK, TASK, queue],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert clicked.returncode == 0, clicked.stderr
    answer = json.loads(clicked.stdout.splitlines()[-1])
    assert answer["status"] == 302

    def finished() -> list[tuple[Any, ...]]:
        return query(
            database,
            "SELECT trigger, started_by, outcome, outstanding_deleted, blacklisted_deleted, cutoff "
            "FROM tokenops_purgerun WHERE dry_run = 0 AND outcome != 'running'",
        )

    rows = wait_until(finished, timeout=RESULT_TIMEOUT, what="the worker's purge")
    # Run by the worker (trigger "task"), for olga, with the confirmed cutoff (as SQLite
    # stores it: naive UTC text).
    # TOKENOPS' OLDER_THAN 0d: every expired row goes (the seed's two 2-hour-old ones too).
    assert rows == [("task", "olga", "ok", 5, 3, answer["cutoff"])]
    assert len(jtis(database) & kept) == 2 == len(jtis(database))
    assert blacklisted_count(database) == 1


def test_a_failing_purge_is_a_failed_task_not_a_success(tmp_path, start_worker, client, queue):
    unmigrated = tmp_path / "unmigrated.sqlite3"
    unmigrated.touch()  # an empty database: a missing file is refused before connecting
    worker = start_worker(unmigrated)

    result = client.send_task(TASK, kwargs={"older_than": "1d"}, queue=queue)
    result.get(timeout=RESULT_TIMEOUT, propagate=False)

    message = (
        "Table token_blacklist_outstandingtoken does not exist in database 'default': "
        "run 'python manage.py migrate --database default'."
    )
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "TokenopsError"
    assert str(result.result) == message
    assert result.retries == 0
    # The worker logs the outcome just after storing it: wait for the line.
    worker.wait_for_log(f"Task {TASK}[{result.id}] raised unexpected: TokenopsError", 10)
    log = worker.log()
    assert f"token purge task failed on 'default': {message}" in log
    assert "Retry in" not in log
    assert tables(unmigrated) == set()


def test_a_locked_database_is_retried_through_the_broker(database, start_worker, client, queue):
    purged, kept = seed(database)
    worker = start_worker(database)
    locker = sqlite3.connect(database, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        result = client.send_task(TASK, kwargs={"older_than": "1d"}, queue=queue)
        worker.wait_for_log("(database is locked); retry 1 of 5 in ", RESULT_TIMEOUT)
        assert jtis(database) == purged | kept
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()

    value = result.get(timeout=RESULT_TIMEOUT)

    assert result.state == "SUCCESS"
    assert result.retries >= 1
    assert value["deleted"] == {"outstanding": 3, "blacklisted": 2}
    assert jtis(database) == kept
    worker.wait_for_log(f"Task {TASK}[{result.id}] retry: Retry in ", 10)


def test_beat_runs_the_installed_periodic_task_on_the_worker(
    database, start_worker, processes, queue, tmp_path, capsys
):
    purged, kept = seed(database)
    for expected in ("Created periodic task", "Periodic task 'tokenops: purge expired tokens' is"):
        done = manage_on(database, *INSTALL)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(expected)
    assert query(database, "SELECT name, task FROM django_celery_beat_periodictask") == [
        (PERIODIC_TASK, TASK)
    ]
    # Shorten the daily crontab to every second, on this test's queue.
    with sqlite3.connect(database) as connection:
        interval = connection.execute(
            "INSERT INTO django_celery_beat_intervalschedule (every, period) VALUES (1, 'seconds')"
        ).lastrowid
        connection.execute(
            "UPDATE django_celery_beat_periodictask SET interval_id = ?, crontab_id = NULL, "
            "queue = ? WHERE name = ?",
            (interval, queue, PERIODIC_TASK),
        )
    connection.close()
    worker = start_worker(database)

    started = time.monotonic()
    beat = start_celery("beat", ["--loglevel=INFO"], database, tmp_path)
    processes.append(beat)

    def purged_rows_gone() -> bool:
        beat.ensure_running()
        return not jtis(database) & purged

    try:
        wait_until(purged_rows_gone, timeout=BEAT_TIMEOUT, what="beat and the worker to purge")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nbeat:\n{beat.log()}\nworker:\n{worker.log()}") from None
    round_trip = time.monotonic() - started

    assert jtis(database) == kept
    assert blacklisted_count(database) == 2
    beat_log = beat.log()
    assert "django_celery_beat.schedulers.DatabaseScheduler" in beat_log
    assert f"Sending due task {PERIODIC_TASK} ({TASK})" in beat_log
    worker.wait_for_log(f"Task {TASK}[", RESULT_TIMEOUT)
    worker.wait_for_log("] succeeded in ", RESULT_TIMEOUT)
    with capsys.disabled():
        print(f"\n[tokenops] beat start -> rows purged by the worker: {round_trip:.2f} s")
