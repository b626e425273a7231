"""Benchmark ``token_purge`` against simplejwt's ``flushexpiredtokens`` on identical data.

For each backend (SQLite always; PostgreSQL and MariaDB when their servers answer) it
seeds one template database with the demo seeder, copies it once per measured command,
runs each command as its own process and prints wall time, the child's peak RSS, the
longest single write transaction and the ratios. After each command it checks that its copy
kept exactly the template's rows that had not expired when the run ended and none that had
expired before it started (LEEWAY 0), then drops the copy. Before each measured command the
server settles (InnoDB's purge, autovacuum, dirty pages; see ``Backend.settle``), so that
no command pays for the one before. ``token_report`` is timed on the template.

Linux only (it reads ``resource.getrusage``); the package itself stays cross-platform.

    python scripts/bench_purge.py                       # 1,000,000 tokens, every backend
    python scripts/bench_purge.py --count 100000 --backends sqlite
    python scripts/bench_purge.py --variant "fixed 10k=--batch-size 10000"
    python scripts/bench_purge.py --count 100000 --backends sqlite --compare-tree /tmp/old

``--compare-tree`` also runs token_purge from another checkout of this repository (its
own manage.py and tokenops), on its own copy of the same data: a change measured
against the code before it, in one run.

Every run also measures the floor: the two set-based DELETEs (blacklist rows, then
outstanding rows) in one transaction, on its own identical copy, and gives each command
as a multiple of it. ``--traffic`` adds a token_purge run during which a second process
keeps logging in, refreshing (rotation with blacklisting) and logging out through
simplejwt, and reports that traffic's latency (median, p99, max) and its errors.
``--count`` and ``--order`` take comma-separated lists (``--order ordered`` seeds ids
that follow creation time, expired rows first; ``scattered`` is the default).

    python scripts/bench_purge.py --count 1000000,3000000 --order scattered,ordered --traffic

Databases are named ``bench_*`` (SQLite files in --workdir) and dropped when done.
PostgreSQL server-backend memory is not part of the RSS shown (it is the server's).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TABLES = ("auth_user", "token_blacklist_outstandingtoken", "token_blacklist_blacklistedtoken")

# A fresh small process per measured command: RUSAGE_CHILDREN of the wrapper is then the
# peak RSS of that one command, not the largest of everything this script ever started.
WRAPPER = """
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({
    "seconds": time.monotonic() - started,
    "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "code": done.returncode, "out": done.stdout, "err": done.stderr,
}))
"""


# token_purge under the benchmark: the engine's per-batch debug lines go to stderr as
# JSON (rows, seconds, target, another writer active), so the longest transaction while
# another writer was active can be told from the others. call_command, not
# execute_from_command_line: a second django.setup() would reset this logger.
RUNNER = """
import json, logging, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_bathhouse_backend.settings")
import django
django.setup()
if os.environ.get("BENCH_TOKENOPS"):
    from django.conf import settings
    extra = json.loads(os.environ["BENCH_TOKENOPS"])
    settings.TOKENOPS = {**getattr(settings, "TOKENOPS", {}), **extra}
class Trace(logging.Handler):
    def emit(self, record):
        if isinstance(record.args, tuple) and len(record.args) == 5:
            _n, rows, seconds, target, note = record.args
            sys.stderr.write("BATCH " + json.dumps([rows, seconds, target, bool(note)]) + "\\n")
log = logging.getLogger("tokenops.purging")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(Trace())
from django.core.management import call_command
call_command(*sys.argv[1:])
"""

# The floor: what the database itself needs to delete the same rows, in one transaction.
FLOOR = """
import json, os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_bathhouse_backend.settings")
import django
django.setup()
from datetime import timedelta
from django.db import connection, transaction
from tokenops.cutoff import safe_cutoff
moment = safe_cutoff(timedelta(0)).db_value()
o, b = "token_blacklist_outstandingtoken", "token_blacklist_blacklistedtoken"
if connection.vendor == "mysql":
    first = f"DELETE b FROM {b} b JOIN {o} o ON o.id = b.token_id WHERE o.expires_at <= %s"
else:
    first = f"DELETE FROM {b} WHERE token_id IN (SELECT id FROM {o} WHERE expires_at <= %s)"
started = time.monotonic()
with transaction.atomic(), connection.cursor() as cursor:
    cursor.execute(first, [moment])
    blacklisted = cursor.rowcount
    cursor.execute(f"DELETE FROM {o} WHERE expires_at <= %s", [moment])
    outstanding = cursor.rowcount
print(json.dumps({"outstanding": outstanding, "blacklisted": blacklisted,
                  "seconds": time.monotonic() - started}))
"""

# The app during a purge: one user logs in, refreshes (rotation blacklists the old token)
# and logs out, again and again, through simplejwt; every request's latency is recorded.
TRAFFIC = """
import json, os, sys, time
from pathlib import Path
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_bathhouse_backend.settings")
import django
django.setup()
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken
stop, ready, pause = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
user, _ = get_user_model().objects.get_or_create(username="bench-app")
requests, errors = [], []
def request(kind, call):
    started = time.monotonic()
    try:
        result = call()
    except Exception as exc:
        result = None
        errors.append([time.time(), kind, f"{type(exc).__name__}: {exc}"])
    requests.append([time.time(), kind, time.monotonic() - started])
    return result
while not stop.exists():
    token = request("login", lambda: str(RefreshToken.for_user(user)))
    if token is not None:
        def refresh():
            serializer = TokenRefreshSerializer(data={"refresh": token})
            serializer.is_valid(raise_exception=True)
            return serializer.validated_data["refresh"]
        rotated = request("refresh", refresh)
        if rotated is not None:
            request("logout", lambda: RefreshToken(rotated).blacklist())
    ready.touch()
    time.sleep(pause)
print(json.dumps({"requests": requests, "errors": errors}))
"""


@dataclass
class Run:
    label: str
    seconds: float
    rss_mb: float
    longest: float | None
    started: datetime
    ended: datetime
    database: str
    detail: dict[str, Any] = field(default_factory=dict)
    batches: list[list[Any]] = field(default_factory=list)
    traffic: dict[str, Any] | None = None

    @property
    def longest_contended(self) -> float | None:
        busy = [seconds for _rows, seconds, _target, contended in self.batches if contended]
        return max(busy) if busy else None


def utcnow() -> datetime:
    return datetime.now(UTC)


def measure(
    args: list[str], env: dict[str, str], cwd: Path = ROOT, expected: int = 0
) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, "-c", WRAPPER, *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    if done.returncode != 0:
        raise SystemExit(f"wrapper failed: {done.stderr.strip()}")
    result = json.loads(done.stdout)
    if result["code"] != expected:
        raise SystemExit(f"{' '.join(args)} failed ({result['code']}): {result['err'].strip()}")
    return result


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Backend:
    name = ""
    placeholder = "%s"

    def url(self, db: str) -> str:
        raise NotImplementedError

    def connect(self, db: str) -> Any:
        raise NotImplementedError

    def create(self, db: str) -> None:
        raise NotImplementedError

    def copy(self, source: str, target: str, env: dict[str, str]) -> None:
        raise NotImplementedError

    def drop(self, db: str) -> None:
        raise NotImplementedError

    def exists(self, db: str) -> bool:
        raise NotImplementedError

    def after_seed(self, db: str) -> None:
        """Give the planner statistics, as autovacuum/auto-stats would have by now."""

    def settle(self, db: str) -> None:
        """Let the server finish the background work that earlier steps left behind.

        A copy leaves dirty pages, a big delete leaves cleanup (InnoDB's purge of
        delete-marked rows, PostgreSQL's autovacuum): done during the next measured
        command, that work would be charged to it, and to whichever command came after
        the biggest delete.
        """

    def moment(self, value: datetime) -> Any:
        return value

    def env(self, db: str, base: dict[str, str]) -> dict[str, str]:
        return {**base, "DATABASE_URL": self.url(db)}


class SQLite(Backend):
    name = "sqlite"
    placeholder = "?"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def path(self, db: str) -> Path:
        return self.workdir / f"{db}.sqlite3"

    def url(self, db: str) -> str:
        return f"sqlite:///{self.path(db)}"

    def connect(self, db: str) -> Any:
        import sqlite3

        return sqlite3.connect(self.path(db))

    def create(self, db: str) -> None:
        self.drop(db)

    def copy(self, source: str, target: str, env: dict[str, str]) -> None:
        shutil.copyfile(self.path(source), self.path(target))

    def drop(self, db: str) -> None:
        for suffix in ("", "-journal", "-wal", "-shm", ".tokenops-purge.lock"):
            Path(f"{self.path(db)}{suffix}").unlink(missing_ok=True)

    def exists(self, db: str) -> bool:
        return self.path(db).exists()

    def settle(self, db: str) -> None:
        os.sync()

    def moment(self, value: datetime) -> Any:
        # Django's SQLite backend stores aware datetimes as naive UTC text.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


class Postgres(Backend):
    name = "postgresql"

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:5432/{db}"

    def connect(self, db: str) -> Any:
        import psycopg

        return psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True)

    def admin(self, sql: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(sql)

    def create(self, db: str) -> None:
        self.drop(db)
        self.admin(f'CREATE DATABASE "{db}"')

    def copy(self, source: str, target: str, env: dict[str, str]) -> None:
        self.drop(target)
        self.admin(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')

    def drop(self, db: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{db}"')

    def exists(self, db: str) -> bool:
        with self.connect("postgres") as conn:
            return bool(
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).fetchone()
            )

    def after_seed(self, db: str) -> None:
        with self.connect(db) as conn:
            conn.execute("VACUUM ANALYZE")

    def settle(self, db: str) -> None:
        with self.connect("postgres") as conn:
            wait_until(
                lambda: (
                    not conn.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'autovacuum worker'"
                    ).fetchone()[0]
                )
            )
            conn.execute("CHECKPOINT")


class MariaDB(Backend):
    """Copies: the target is migrated by Django, then filled with INSERT ... SELECT."""

    name = "mariadb"

    def url(self, db: str) -> str:
        return f"mysql://root@127.0.0.1:3306/{db}"

    def connect(self, db: str) -> Any:
        import MySQLdb

        params = {"database": db} if db else {}
        conn = MySQLdb.connect(host="127.0.0.1", user="root", port=3306, **params)
        conn.autocommit(True)
        return conn

    def admin(self, *sql: str) -> None:
        conn = self.connect("")
        try:
            for statement in sql:
                conn.cursor().execute(statement)
        finally:
            conn.close()

    def create(self, db: str) -> None:
        self.drop(db)
        self.admin(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")

    def copy(self, source: str, target: str, env: dict[str, str]) -> None:
        self.create(target)
        migrate(self, target, env)
        # Names are this script's own bench_* constants, never user input.
        statements = ["SET FOREIGN_KEY_CHECKS = 0"]
        for table in TABLES:
            statements += [
                f"DELETE FROM `{target}`.`{table}`",  # noqa: S608
                f"INSERT INTO `{target}`.`{table}` SELECT * FROM `{source}`.`{table}`",  # noqa: S608
            ]
        statements += ["SET FOREIGN_KEY_CHECKS = 1"]
        statements += [f"ANALYZE TABLE `{target}`.`{table}`" for table in TABLES]
        self.admin(*statements)

    def drop(self, db: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS `{db}`")

    def exists(self, db: str) -> bool:
        conn = self.connect("")
        try:
            cursor = conn.cursor()
            cursor.execute("SHOW DATABASES LIKE %s", [db])
            return cursor.fetchone() is not None
        finally:
            conn.close()

    def moment(self, value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None)

    def after_seed(self, db: str) -> None:
        self.admin(*[f"ANALYZE TABLE `{db}`.`{table}`" for table in TABLES])

    def settle(self, db: str) -> None:
        conn = self.connect("")
        try:
            cursor = conn.cursor()

            def purged() -> bool:
                cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length'")
                return int(cursor.fetchone()[1]) < 1000

            wait_until(purged)
            # Writes the tables' dirty pages to disk (and holds them read-only until UNLOCK).
            names = ", ".join(f"`{db}`.`{table}`" for table in TABLES)
            cursor.execute(f"FLUSH TABLES {names} FOR EXPORT")
            cursor.execute("UNLOCK TABLES")
        finally:
            conn.close()


def wait_until(done: Callable[[], bool], timeout: float = 600.0) -> None:
    """Poll ``done()`` each second until it is true or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(1)


def migrate(backend: Backend, db: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v0"],
        env=backend.env(db, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"migrate {db} failed: {done.stderr.strip()}")


def fingerprint(
    backend: Backend, db: str, after: datetime, upto_id: int | None = None
) -> dict[str, tuple[int, int]]:
    """(count, id checksum) of rows expiring after ``after``, and of rows at or before it.

    ``upto_id``: only outstanding rows up to that id (and their blacklist rows), so that
    the rows the app traffic added during a run are left out of the comparison.
    """
    moment = backend.moment(after)
    upto = 2**62 if upto_id is None else upto_id
    queries = {
        "outstanding_later": "SELECT COUNT(*), COALESCE(SUM(o.id * o.id), 0) "
        "FROM token_blacklist_outstandingtoken o WHERE o.expires_at > %s AND o.id <= %s",
        "blacklisted_later": "SELECT COUNT(*), COALESCE(SUM(b.id * b.token_id), 0) "
        "FROM token_blacklist_blacklistedtoken b JOIN token_blacklist_outstandingtoken o "
        "ON o.id = b.token_id WHERE o.expires_at > %s AND o.id <= %s",
        "outstanding_expired": "SELECT COUNT(*), COALESCE(SUM(o.id), 0) "
        "FROM token_blacklist_outstandingtoken o WHERE o.expires_at <= %s AND o.id <= %s",
        "blacklisted_total": "SELECT COUNT(*), COALESCE(SUM(b.id), 0) "
        "FROM token_blacklist_blacklistedtoken b",
        "outstanding_total": "SELECT COUNT(*), 0 FROM token_blacklist_outstandingtoken o "
        "WHERE o.id <= %s",
    }
    conn = backend.connect(db)
    try:
        result = {}
        for key, sql in queries.items():
            cursor = conn.cursor()
            params = [moment, upto] if sql.count("%s") == 2 else [upto] * sql.count("%s")
            sql = sql.replace("%s", backend.placeholder)
            cursor.execute(sql, params)
            count, checksum = cursor.fetchone()
            result[key] = (int(count), int(checksum))
        return result
    finally:
        conn.close()


def max_id(backend: Backend, db: str) -> int:
    conn = backend.connect(db)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM token_blacklist_outstandingtoken")
        return int(cursor.fetchone()[0])
    finally:
        conn.close()


def run_command(
    backend: Backend,
    db: str,
    label: str,
    args: list[str],
    env: dict[str, str],
    tree: Path = ROOT,
    expected: int = 0,
) -> Run:
    """Run ``manage.py <args>`` of ``tree`` (its tokenops first on sys.path) on ``db``."""
    started = utcnow()
    env = {**env, "PYTHONPATH": str(tree)}
    # A variant's "TOKENOPS={...}" argument becomes settings for this run only.
    overrides = [a for a in args if a.startswith("TOKENOPS=")]
    args = [a for a in args if not a.startswith("TOKENOPS=")]
    if overrides:
        env["BENCH_TOKENOPS"] = overrides[-1][len("TOKENOPS=") :]
    traced = args[0] == "token_purge"
    command = [PYTHON, "-c", RUNNER, *args] if traced else [PYTHON, "manage.py", *args]
    result = measure(command, backend.env(db, env), cwd=tree, expected=expected)
    ended = utcnow()
    longest = None
    detail: dict[str, Any] = {}
    if "--format" in args and "json" in args:
        detail = json.loads(result["out"])
        longest = detail.get("longest_transaction_seconds")
    batches = [
        json.loads(line[len("BATCH ") :])
        for line in result["err"].splitlines()
        if line.startswith("BATCH ")
    ]
    return Run(
        label,
        result["seconds"],
        result["rss_mb"],
        longest,
        started,
        ended,
        db,
        detail,
        batches,
    )


def run_floor(backend: Backend, db: str, env: dict[str, str]) -> Run:
    started = utcnow()
    result = measure([PYTHON, "-c", FLOOR], backend.env(db, {**env, "PYTHONPATH": str(ROOT)}))
    ended = utcnow()
    detail = json.loads(result["out"])
    return Run(
        "floor (2 DELETEs, one transaction)",
        result["seconds"],
        result["rss_mb"],
        detail["seconds"],
        started,
        ended,
        db,
        detail,
    )


def run_with_traffic(
    backend: Backend,
    db: str,
    label: str,
    args: list[str],
    env: dict[str, str],
    pause: float,
    workdir: Path,
) -> Run:
    """``run_command`` while a second process plays the app; its requests are timed."""
    stop, ready = workdir / f"{db}.stop", workdir / f"{db}.ready"
    stop.unlink(missing_ok=True)
    ready.unlink(missing_ok=True)
    app = subprocess.Popen(
        [PYTHON, "-c", TRAFFIC, str(stop), str(ready), str(pause)],
        cwd=ROOT,
        env=backend.env(db, {**env, "PYTHONPATH": str(ROOT)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not ready.exists():
            if app.poll() is not None:
                raise SystemExit(f"app traffic failed: {app.stderr.read() if app.stderr else ''}")
            time.sleep(0.05)
        run = run_command(backend, db, label, args, env)
    finally:
        stop.touch()
        out, err = app.communicate(timeout=300)
        stop.unlink(missing_ok=True)
        ready.unlink(missing_ok=True)
    if app.returncode:
        raise SystemExit(f"app traffic failed: {err.strip()}")
    data = json.loads(out)
    begin, end = run.started.timestamp(), run.ended.timestamp()
    during = sorted(seconds for at, _kind, seconds in data["requests"] if begin <= at <= end)
    errors = [e for e in data["errors"] if begin <= e[0] <= end]
    run.traffic = {
        "requests": len(during),
        "errors": len(errors),
        "error_samples": sorted({e[2] for e in errors})[:3],
        "median": during[len(during) // 2] if during else None,
        "p99": during[min(len(during) - 1, int(len(during) * 0.99))] if during else None,
        "max": during[-1] if during else None,
    }
    return run


def bench_backend(
    backend: Backend, options: argparse.Namespace, env: dict[str, str], count: int, order: str
) -> list[Run]:
    seed_db = f"bench_seed_{count}" + ("_ordered" if order == "ordered" else "")
    runs: list[Run] = []
    if options.reuse_seed and backend.exists(seed_db):
        print(f"[{backend.name}] reusing {seed_db}", flush=True)
        migrate(backend, seed_db, env)  # the code may have a migration the seed lacks
    else:
        backend.create(seed_db)
        migrate(backend, seed_db, env)
        seeded = measure(
            [
                PYTHON,
                "manage.py",
                "seed_demo_tokens",
                *(["--ordered"] if order == "ordered" else []),
                "--count",
                str(count),
                "--days",
                "60",
                "--lifetime",
                "7d",
                "--blacklisted",
                "0.3",
                "--seed",
                str(options.seed),
            ],
            backend.env(seed_db, env),
        )
        backend.after_seed(seed_db)
        print(f"[{backend.name}] seeded {count} ({order}) in {seeded['seconds']:.1f} s", flush=True)
    settle(backend, seed_db)

    for attempt in range(options.report_runs):
        run = run_command(
            backend,
            seed_db,
            f"token_report #{attempt + 1}",
            ["token_report", "--format", "json"],
            env,
        )
        run.detail = {"count": count, "order": order}
        runs.append(run)
        print(f"[{backend.name}] {run.label}: {run.seconds:.2f} s, {run.rss_mb:.0f} MB", flush=True)

    runs += run_checks(backend, seed_db, env, count, order, options.report_runs)

    purge = ["token_purge", "--format", "json", "--no-progress"]
    # (label, arguments, tree, kind): kind is "command", "floor" or "traffic".
    commands: list[tuple[str, list[str], Path, str]] = []
    if not options.skip_floor:
        commands.append(("floor", [], ROOT, "floor"))
    if not options.skip_flush:
        commands.append(("flushexpiredtokens", ["flushexpiredtokens"], ROOT, "command"))
    commands.append(("token_purge", purge, ROOT, "command"))
    for variant in options.variant:
        label, _, extra = variant.partition("=")
        # TOKENOPS={...} is JSON: one argument, its quotes kept.
        words = [extra] if extra.startswith("TOKENOPS=") else shlex.split(extra)
        commands.append((f"token_purge {label}", [*purge, *words], ROOT, "command"))
    for tree in options.compare_tree:
        commands.append((f"token_purge @ {tree}", purge, tree.resolve(), "command"))
    if options.traffic:
        commands.append(("token_purge + app traffic", purge, ROOT, "traffic"))
    upto = max_id(backend, seed_db)
    kept: dict[str, int] = {}
    for label, args, tree, kind in commands:
        db = "bench_run"
        backend.copy(seed_db, db, env)
        settle(backend, db)
        if kind == "floor":
            run = run_floor(backend, db, env)
        elif kind == "traffic":
            run = run_with_traffic(
                backend, db, label, args, env, options.traffic_pause, options.workdir
            )
        else:
            run = run_command(backend, db, label, args, env, tree)
        run.detail["count"], run.detail["order"] = count, order
        runs.append(run)
        busy = run.longest_contended
        print(
            f"[{backend.name}] {count} {order} {run.label}: {run.seconds:.2f} s, "
            f"{run.rss_mb:.0f} MB, longest transaction "
            f"{run.longest if run.longest is not None else '-'}"
            + (f", batches {len(run.batches)}" if run.batches else "")
            + (f", longest while another writer was active {busy:.3f}" if busy else "")
            + (f", app traffic {run.traffic}" if run.traffic else ""),
            flush=True,
        )
        # Checked and dropped at once: the next command then runs beside no other copy.
        kept[run.label] = check(backend, seed_db, run, upto)
        backend.drop(db)

    print(
        f"[{backend.name}] rows check OK: every copy kept the seed's rows that had not "
        "expired when its run ended and none that had expired before it started; rows that "
        f"expired during each run, kept: {kept}",
        flush=True,
    )
    if not options.keep_seed:
        backend.drop(seed_db)
    return runs


# token_report --check at full size: (label, extra arguments, exit code). With --older-than
# 100d nothing in the 60-day seed is purgeable, so with no purge recorded the probe reads
# the whole table (no index on expires_at); after a complete purge that left the table
# whole, a stale success makes it ask only the rows added since (through the primary key).
NEVER_PURGED = (
    ("token_report --check (never purged, purgeable rows)", [], 4),
    (
        "token_report --check (never purged, nothing purgeable: whole-table probe)",
        ["--older-than", "100d"],
        0,
    ),
)
STALE = (
    "token_report --check (stale success, nothing purgeable: watermark)",
    ["--older-than", "100d"],
    0,
)


def run_checks(
    backend: Backend, seed_db: str, env: dict[str, str], count: int, order: str, repeat: int
) -> list[Run]:
    db = "bench_check"
    backend.copy(seed_db, db, env)
    settle(backend, db)
    runs = []

    def timed(label: str, extra: list[str], expected: int) -> None:
        for attempt in range(repeat):
            run = run_command(
                backend,
                db,
                f"{label} #{attempt + 1}",
                ["token_report", "--check", *extra],
                env,
                expected=expected,
            )
            run.detail = {"count": count, "order": order}
            runs.append(run)
            print(f"[{backend.name}] {run.label}: {run.seconds:.2f} s", flush=True)

    for label, extra, expected in NEVER_PURGED:
        timed(label, extra, expected)
    # A complete purge that deletes nothing, made stale: the history's last success is old.
    run_command(backend, db, "token_purge (nothing)", ["token_purge", "--older-than", "100d"], env)
    connection = backend.connect(db)
    try:
        cursor = connection.cursor()
        cursor.execute(
            "UPDATE tokenops_purgerun SET started_at = '2000-01-01 00:00:00', "
            "heartbeat_at = '2000-01-01 00:00:00', finished_at = '2000-01-01 00:00:00'"
        )
        connection.commit()
    finally:
        connection.close()
    timed(*STALE)
    backend.drop(db)
    return runs


def check(backend: Backend, seed_db: str, run: Run, upto: int) -> int:
    """The run's copy kept the seed's not-yet-expired rows and nothing already expired.

    Only the seed's rows are compared (ids up to ``upto``, its largest): the app traffic
    adds rows of its own during a run. Returns how many rows that expired during the run
    were kept (an expiry after the run took its cutoff).
    """
    after = run.ended + timedelta(seconds=1)
    expected = fingerprint(backend, seed_db, after, upto)
    got = fingerprint(backend, run.database, after, upto)
    before_start = fingerprint(backend, run.database, run.started - timedelta(seconds=1))
    problems = [
        key for key in ("outstanding_later", "blacklisted_later") if got[key] != expected[key]
    ]
    if before_start["outstanding_expired"][0]:
        problems.append(f"{before_start['outstanding_expired'][0]} expired rows left")
    if problems:
        raise SystemExit(f"[{backend.name}] {run.label} left different rows: {problems}")
    return got["outstanding_total"][0] - got["outstanding_later"][0]


def settle(backend: Backend, db: str) -> None:
    started = time.monotonic()
    backend.settle(db)
    print(f"[{backend.name}] settled in {time.monotonic() - started:.1f} s", flush=True)


def table(results: dict[str, list[Run]]) -> str:
    lines = [
        "| backend | tokens | ids | command | wall s | x floor | batches | peak RSS MB "
        "| longest transaction s | longest while another writer was active s "
        "| vs flushexpiredtokens |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for backend, runs in results.items():
        for run in runs:
            if run.label.startswith("token_report"):
                continue
            same = [
                r
                for r in runs
                if (r.detail.get("count"), r.detail.get("order"))
                == (run.detail.get("count"), run.detail.get("order"))
            ]
            flush = next((r for r in same if r.label == "flushexpiredtokens"), None)
            floor = next((r for r in same if r.label.startswith("floor")), None)
            longest = run.longest if run.longest is not None else run.seconds
            approx = "" if run.longest is not None else " (one transaction)"
            ratio = ""
            if flush is not None and run is not flush:
                ratio = (
                    f"{flush.seconds / run.seconds:.1f}x faster, "
                    f"{flush.rss_mb / run.rss_mb:.0f}x less memory"
                )
            over = f"{run.seconds / floor.seconds:.2f}" if floor is not None else "-"
            busy = run.longest_contended
            lines.append(
                f"| {backend} | {run.detail.get('count', 0):,} | {run.detail.get('order', '')} "
                f"| `{run.label}` | {run.seconds:.1f} | {over} | {len(run.batches) or '-'} "
                f"| {run.rss_mb:.0f} | {longest:.2f}{approx} "
                f"| {f'{busy:.2f}' if busy else '-'} | {ratio} |"
            )
    traffic = [(b, r) for b, runs in results.items() for r in runs if r.traffic]
    if traffic:
        lines += [
            "",
            "| backend | tokens | ids | app requests during the purge | errors "
            "| median s | p99 s | max s | purge wall s |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for backend, run in traffic:
            t = run.traffic or {}

            def sec(value: float | None) -> str:
                return "-" if value is None else f"{value:.3f}"

            lines.append(
                f"| {backend} | {run.detail.get('count', 0):,} | {run.detail.get('order', '')} "
                f"| {t['requests']} | {t['errors']} | {sec(t['median'])} | {sec(t['p99'])} "
                f"| {sec(t['max'])} | {run.seconds:.1f} |"
            )
    lines += [
        "",
        "| backend | tokens | ids | `token_report` run | wall s | peak RSS MB |",
        "|---|---:|---|---|---:|---:|",
    ]
    for backend, runs in results.items():
        for run in runs:
            if run.label.startswith("token_report"):
                lines.append(
                    f"| {backend} | {run.detail.get('count', 0):,} | "
                    f"{run.detail.get('order', '')} | {run.label} | {run.seconds:.2f} "
                    f"| {run.rss_mb:.0f} |"
                )
    return "\n".join(lines)


def main() -> None:
    if not sys.platform.startswith("linux"):
        raise SystemExit("bench_purge.py measures with resource.getrusage: Linux only.")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", default="1000000", help="Tokens to seed; comma-separated for several sizes."
    )
    parser.add_argument(
        "--order",
        default="scattered",
        help="Comma-separated: scattered (issue times at random over the ids) and/or ordered "
        "(ids follow creation time, expired rows first, as in a real table).",
    )
    parser.add_argument(
        "--traffic",
        action="store_true",
        help="Also run token_purge while a second process plays the app (login, refresh, "
        "logout through simplejwt) and report that traffic's latency and errors.",
    )
    parser.add_argument(
        "--traffic-pause",
        type=float,
        default=0.05,
        help="Seconds the app waits between its login-refresh-logout rounds.",
    )
    parser.add_argument("--skip-floor", action="store_true", help="Do not measure the floor.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql,mariadb",
        help="Comma-separated; servers that do not answer are skipped with a note.",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tokenops-bench"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=ARGS",
        help="Also run token_purge with these extra arguments (repeatable); an argument "
        'TOKENOPS={"KEY": value} sets TOKENOPS keys for that run only.',
    )
    parser.add_argument(
        "--compare-tree",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="Also run token_purge from this other checkout (e.g. the code before a change).",
    )
    parser.add_argument("--report-runs", type=int, default=2, help="token_report runs.")
    parser.add_argument("--skip-flush", action="store_true", help="Do not run flushexpiredtokens.")
    parser.add_argument("--keep-seed", action="store_true", help="Keep bench_seed_<count>.")
    parser.add_argument("--reuse-seed", action="store_true", help="Reuse a kept seed database.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    options = parser.parse_args()

    options.workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SIMPLE_JWT_LEEWAY": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    available: dict[str, tuple[Backend, int | None]] = {
        "sqlite": (SQLite(options.workdir), None),
        "postgresql": (Postgres(), 5432),
        "mariadb": (MariaDB(), 3306),
    }
    names = [name.strip() for name in options.backends.split(",")]
    unknown = [name for name in names if name not in available]
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}: use {', '.join(available)}")
    counts = [int(part) for part in options.count.split(",")]
    orders = [part.strip() for part in options.order.split(",")]
    if set(orders) - {"scattered", "ordered"}:
        parser.error("--order: scattered and/or ordered")
    results: dict[str, list[Run]] = {}
    for name in names:
        backend, port = available[name]
        if port is not None and not reachable(port):
            print(f"[{name}] server on 127.0.0.1:{port} not reachable: skipped", flush=True)
            continue
        for count in counts:
            for order in orders:
                results.setdefault(backend.name, []).extend(
                    bench_backend(backend, options, env, count, order)
                )
    print()
    print(table(results))
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    name: [
                        {
                            "label": r.label,
                            "seconds": r.seconds,
                            "rss_mb": r.rss_mb,
                            "longest_transaction_seconds": r.longest,
                            "longest_contended_seconds": r.longest_contended,
                            "batches": len(r.batches),
                            "traffic": r.traffic,
                            **{k: r.detail.get(k) for k in ("count", "order")},
                        }
                        for r in runs
                    ]
                    for name, runs in results.items()
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
