"""Benchmark ``token_purge`` against simplejwt's ``flushexpiredtokens`` on identical data.

For each backend (SQLite always; PostgreSQL and MariaDB when their servers answer) it
seeds one template database with the demo seeder, copies it once per measured command,
runs each command as its own process and prints wall time, the child's peak RSS, the
longest single write transaction and the ratios. It then checks that every copy kept
exactly the template's rows that had not expired when the runs ended and none that had
expired before its command started (LEEWAY 0). ``token_report`` is timed on the template.

Linux only (it reads ``resource.getrusage``); the package itself stays cross-platform.

    python scripts/bench_purge.py                       # 1,000,000 tokens, every backend
    python scripts/bench_purge.py --count 100000 --backends sqlite
    python scripts/bench_purge.py --variant "fixed 10k=--batch-size 10000"
    python scripts/bench_purge.py --count 100000 --backends sqlite --compare-tree /tmp/old

``--compare-tree`` also runs token_purge from another checkout of this repository (its
own manage.py and tokenops), on its own copy of the same data: a change measured
against the code before it, in one run.

Databases are named ``bench_*`` (SQLite files in --workdir) and dropped at the end.
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def measure(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, "-c", WRAPPER, *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    if done.returncode != 0:
        raise SystemExit(f"wrapper failed: {done.stderr.strip()}")
    result = json.loads(done.stdout)
    if result["code"] != 0:
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
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path(db)}{suffix}").unlink(missing_ok=True)

    def exists(self, db: str) -> bool:
        return self.path(db).exists()

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


def fingerprint(backend: Backend, db: str, after: datetime) -> dict[str, tuple[int, int]]:
    """(count, id checksum) of rows expiring after ``after``, and of rows at or before it."""
    moment = backend.moment(after)
    queries = {
        "outstanding_later": "SELECT COUNT(*), COALESCE(SUM(id * id), 0) "
        "FROM token_blacklist_outstandingtoken WHERE expires_at > %s",
        "blacklisted_later": "SELECT COUNT(*), COALESCE(SUM(b.id * b.token_id), 0) "
        "FROM token_blacklist_blacklistedtoken b JOIN token_blacklist_outstandingtoken o "
        "ON o.id = b.token_id WHERE o.expires_at > %s",
        "outstanding_expired": "SELECT COUNT(*), COALESCE(SUM(id), 0) "
        "FROM token_blacklist_outstandingtoken WHERE expires_at <= %s",
        "blacklisted_total": "SELECT COUNT(*), COALESCE(SUM(id), 0) "
        "FROM token_blacklist_blacklistedtoken",
        "outstanding_total": "SELECT COUNT(*), 0 FROM token_blacklist_outstandingtoken",
    }
    conn = backend.connect(db)
    try:
        result = {}
        for key, sql in queries.items():
            cursor = conn.cursor()
            with_moment = "%s" in sql
            sql = sql.replace("%s", backend.placeholder)
            cursor.execute(sql, [moment] if with_moment else [])
            count, checksum = cursor.fetchone()
            result[key] = (int(count), int(checksum))
        return result
    finally:
        conn.close()


def run_command(
    backend: Backend,
    db: str,
    label: str,
    args: list[str],
    env: dict[str, str],
    tree: Path = ROOT,
) -> Run:
    """Run ``manage.py <args>`` of ``tree`` (its tokenops first on sys.path) on ``db``."""
    started = utcnow()
    env = {**env, "PYTHONPATH": str(tree)}
    result = measure([PYTHON, "manage.py", *args], backend.env(db, env), cwd=tree)
    ended = utcnow()
    longest = None
    detail: dict[str, Any] = {}
    if "--format" in args and "json" in args:
        detail = json.loads(result["out"])
        longest = detail.get("longest_transaction_seconds")
    return Run(label, result["seconds"], result["rss_mb"], longest, started, ended, db, detail)


def bench_backend(backend: Backend, options: argparse.Namespace, env: dict[str, str]) -> list[Run]:
    seed_db = f"bench_seed_{options.count}"
    runs: list[Run] = []
    if options.reuse_seed and backend.exists(seed_db):
        print(f"[{backend.name}] reusing {seed_db}", flush=True)
    else:
        backend.create(seed_db)
        migrate(backend, seed_db, env)
        seeded = measure(
            [
                PYTHON,
                "manage.py",
                "seed_demo_tokens",
                "--count",
                str(options.count),
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
        print(f"[{backend.name}] seeded {options.count} in {seeded['seconds']:.1f} s", flush=True)

    for attempt in range(options.report_runs):
        run = run_command(
            backend,
            seed_db,
            f"token_report #{attempt + 1}",
            ["token_report", "--format", "json"],
            env,
        )
        runs.append(run)
        print(f"[{backend.name}] {run.label}: {run.seconds:.2f} s, {run.rss_mb:.0f} MB", flush=True)

    purge = ["token_purge", "--format", "json", "--no-progress"]
    commands: list[tuple[str, list[str], Path]] = []
    if not options.skip_flush:
        commands.append(("flushexpiredtokens", ["flushexpiredtokens"], ROOT))
    commands.append(("token_purge", purge, ROOT))
    for variant in options.variant:
        label, _, extra = variant.partition("=")
        commands.append((f"token_purge {label}", [*purge, *shlex.split(extra)], ROOT))
    for tree in options.compare_tree:
        commands.append((f"token_purge @ {tree}", purge, tree.resolve()))
    for index, (label, args, tree) in enumerate(commands):
        db = f"bench_run{index}"
        backend.copy(seed_db, db, env)
        run = run_command(backend, db, label, args, env, tree)
        runs.append(run)
        print(
            f"[{backend.name}] {label}: {run.seconds:.2f} s, {run.rss_mb:.0f} MB, "
            f"longest transaction {run.longest if run.longest is not None else '-'}",
            flush=True,
        )

    check(backend, seed_db, [r for r in runs if not r.label.startswith("token_report")])
    for index in range(len(commands)):
        backend.drop(f"bench_run{index}")
    if not options.keep_seed:
        backend.drop(seed_db)
    return runs


def check(backend: Backend, seed_db: str, runs: list[Run]) -> None:
    """Every copy kept the template's not-yet-expired rows and nothing already expired."""
    if not runs:
        return
    last_end = max(run.ended for run in runs) + timedelta(seconds=1)
    expected = fingerprint(backend, seed_db, last_end)
    for run in runs:
        got = fingerprint(backend, run.database, last_end)
        before_start = fingerprint(backend, run.database, run.started - timedelta(seconds=1))
        problems = [
            key for key in ("outstanding_later", "blacklisted_later") if got[key] != expected[key]
        ]
        if before_start["outstanding_expired"][0]:
            problems.append(f"{before_start['outstanding_expired'][0]} expired rows left")
        if problems:
            raise SystemExit(f"[{backend.name}] {run.label} left different rows: {problems}")
    rows = {run.label: fingerprint(backend, run.database, last_end) for run in runs}
    window = {
        label: f["outstanding_total"][0] - f["outstanding_later"][0] for label, f in rows.items()
    }
    print(
        f"[{backend.name}] rows check OK: same rows not expired at the end "
        f"({expected['outstanding_later'][0]} outstanding, "
        f"{expected['blacklisted_later'][0]} blacklisted); no row expired before its "
        f"run started is left; rows that expired during the runs, kept: {window}",
        flush=True,
    )


def table(results: dict[str, list[Run]], count: int) -> str:
    lines = [
        f"Tokens: {count:,}",
        "",
        "| backend | command | wall s | peak RSS MB | longest transaction s "
        "| vs flushexpiredtokens |",
        "|---|---|---:|---:|---:|---|",
    ]
    for backend, runs in results.items():
        flush = next((r for r in runs if r.label == "flushexpiredtokens"), None)
        for run in runs:
            if run.label.startswith("token_report"):
                continue
            longest = run.longest if run.longest is not None else run.seconds
            approx = "" if run.longest is not None else " (whole run, one transaction)"
            ratio = ""
            if flush is not None and run is not flush:
                ratio = (
                    f"{flush.seconds / run.seconds:.1f}x faster, "
                    f"{flush.rss_mb / run.rss_mb:.0f}x less memory"
                )
            lines.append(
                f"| {backend} | `{run.label}` | {run.seconds:.1f} | {run.rss_mb:.0f} | "
                f"{longest:.2f}{approx} | {ratio} |"
            )
    lines += ["", "| backend | `token_report` run | wall s | peak RSS MB |", "|---|---|---:|---:|"]
    for backend, runs in results.items():
        for run in runs:
            if run.label.startswith("token_report"):
                lines.append(f"| {backend} | {run.label} | {run.seconds:.2f} | {run.rss_mb:.0f} |")
    return "\n".join(lines)


def main() -> None:
    if not sys.platform.startswith("linux"):
        raise SystemExit("bench_purge.py measures with resource.getrusage: Linux only.")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
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
        help="Also run token_purge with these extra arguments (repeatable).",
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
    results: dict[str, list[Run]] = {}
    for name in names:
        backend, port = available[name]
        if port is not None and not reachable(port):
            print(f"[{name}] server on 127.0.0.1:{port} not reachable: skipped", flush=True)
            continue
        results[backend.name] = bench_backend(backend, options, env)
    print()
    print(table(results, options.count))
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
