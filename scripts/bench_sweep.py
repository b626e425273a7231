"""Measure in-app sweeps (issue 15): their cost on the token-obtain view, and a simulation.

``latency`` (default): for each backend (SQLite always; PostgreSQL and MariaDB when their
servers answer) it seeds ``--count`` tokens over 60 days with a 7-day lifetime (about 88%
expired; ids follow creation time, as in a real table), then times simplejwt's
token-obtain view in a child process per configuration, ``--requests`` logins each, on the
same database (each sweep finds a full window of dead rows: the most a sweep costs).
Configurations: sweeps off; SWEEP_PROBABILITY 0.1 and 1.0 (a request's sweep runs after
its response, the default); ``p=0.1-inline`` and ``p=1.0-inline`` (SWEEP_AFTER_RESPONSE
False: at the token's commit, inside the view).

``--client http`` (default): the child serves the project with Django's threaded WSGI
server (runserver's) and logs in over real HTTP, one login every ``--interval-ms``; the
time is the client's, until the whole response has arrived. ``--client test``: Django's
test client, whose time includes the request's end (so a sweep after the response too).
Beside it, the worker's time: from ``request_started`` to the end of ``request_finished``
(a sweep after the response included).
Passwords use the MD5 hasher so the view's own cost is small and the sweep's shows.

``simulate``: the real ``sweep`` function on a real SQLite file with a simulated clock
(``sweep(now=...)``): tokens issued at a steady rate over simulated weeks (7-day
lifetime), the table's size against its live tokens; then a backlog of dead rows
draining, against the rate predicted (probability x SWEEP_MAX_ROWS rows per token).

    python scripts/bench_sweep.py --count 1000000
    python scripts/bench_sweep.py --configs off,p=1.0,p=1.0-inline --max-rows 500,100
    python scripts/bench_sweep.py --backends sqlite --client test --configs p=1.0
    python scripts/bench_sweep.py --backends sqlite --sqlite-journal wal
    python scripts/bench_sweep.py simulate --backlog 1000000

``--max-rows`` with several values runs each on its own copy of the seeded database (a
run at probability 1.0 deletes up to half its dead rows).

Databases are named ``bench_sweep_*`` (SQLite files in --workdir) and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_purge import MariaDB, Postgres, SQLite, migrate, reachable  # noqa: E402

# label: (SWEEP_PROBABILITY, SWEEP_AFTER_RESPONSE)
CONFIGS = {
    "off": (0.0, True),
    "p=0.1": (0.1, True),
    "p=1.0": (1.0, True),
    "p=0.1-inline": (0.1, False),
    "p=1.0-inline": (1.0, False),
}

# The child: one configuration, timed request by request.
RUNNER = """
import http.client, json, os, statistics, sys, threading, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_bathhouse_backend.settings")
import django
django.setup()
from django.conf import settings
config = json.loads(os.environ["BENCH_SWEEP"])
settings.DEBUG = False
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_PROBABILITY": config["probability"],
                     "SWEEP_MAX_ROWS": config["max_rows"],
                     "SWEEP_AFTER_RESPONSE": config["after_response"]}
from django.contrib.auth import get_user_model
from tokenops.sweeping import sweep_totals
users = get_user_model()._default_manager
user, _ = users.get_or_create(username="bench-sweeper")
user.set_password("pw"); user.save()
credentials = {"username": "bench-sweeper", "password": "pw"}
# The worker's time per request, from request_started to the end of request_finished's
# receivers (connected after tokenops's, so a sweep after the response is inside).
from django.core.signals import request_finished, request_started
local, busy = threading.local(), []
def started(**kwargs):
    local.started = time.perf_counter()
def finished(**kwargs):
    busy.append(time.perf_counter() - local.started)
request_started.connect(started, weak=False)
request_finished.connect(finished, weak=False)
if config["client"] == "http":
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application
    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass
    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    body = json.dumps(credentials)
    def login():
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST", "/api/token/", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        assert response.status == 200, data
        return elapsed
else:
    from django.test import Client
    from django.test.utils import setup_test_environment
    setup_test_environment()
    client = Client()
    def login():
        started = time.perf_counter()
        response = client.post("/api/token/", credentials)
        assert response.status_code == 200, response.content
        return time.perf_counter() - started
before = sweep_totals("default")
times = []
interval = config["interval_ms"] / 1000
for _ in range(config["requests"]):
    started = time.perf_counter()
    times.append(login())
    time.sleep(max(0.0, interval - (time.perf_counter() - started)))
time.sleep(1)  # the last request's sweep, after its response
busy = busy[-len(times):]  # the logins' (the user's set-up made no request)
after = sweep_totals("default")
times.sort()
busy.sort()
print(json.dumps({
    "median_ms": statistics.median(times) * 1000,
    "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
    "max_ms": times[-1] * 1000,
    "worker_median_ms": statistics.median(busy) * 1000,
    "worker_p99_ms": busy[int(len(busy) * 0.99) - 1] * 1000,
    "sweeps": after.sweeps - before.sweeps,
    "deleted": after.outstanding - before.outstanding,
}))
"""


def latency(options: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="bench-sweep-"))
    backends = {"sqlite": SQLite(workdir), "postgresql": Postgres(), "mariadb": MariaDB()}
    ports = {"postgresql": 5432, "mariadb": 3306}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env["PYTHONPATH"] = str(ROOT)
    configs = [label for label in options.configs.split(",") if label]
    unknown = [label for label in configs if label not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown --configs {unknown}; known: {', '.join(CONFIGS)}")
    variants = [int(rows) for rows in options.max_rows.split(",")]
    results: dict[str, Any] = {}
    for name in options.backends.split(","):
        backend = backends[name]
        if name in ports and not reachable(ports[name]):
            print(f"[{name}] not reachable: skipped", flush=True)
            continue
        template = f"bench_sweep_{options.count}"
        backend.create(template)
        try:
            migrate(backend, template, env)
            started = time.monotonic()
            seeded = subprocess.run(
                [PYTHON, "manage.py", "seed_demo_tokens", "--ordered", "--count",
                 str(options.count), "--days", str(options.days), "--lifetime",
                 options.lifetime, "--blacklisted",
                 "0.3", "--seed", "1"],
                env=backend.env(template, env), cwd=ROOT, capture_output=True, text=True,
            )  # fmt: skip
            if seeded.returncode:
                raise SystemExit(f"seeding failed: {seeded.stderr.strip()}")
            backend.after_seed(template)
            if name == "sqlite" and options.sqlite_journal == "wal":
                with backend.connect(template) as conn:  # persists in the file
                    conn.execute("PRAGMA journal_mode = WAL")
            print(f"[{name}] seeded {options.count} in {time.monotonic() - started:.0f} s")
            results[name] = {}
            for variant, max_rows in enumerate(variants):
                # Each variant on its own copy: a sweep run deletes up to half the dead rows.
                db = template if len(variants) == 1 else f"{template}_{max_rows}"
                if db != template:
                    backend.copy(template, db, env)
                try:
                    for label in configs:
                        if variant and label == "off":
                            continue  # the same with any SWEEP_MAX_ROWS
                        key = label if len(variants) == 1 else f"{label} max {max_rows}"
                        probability, after_response = CONFIGS[label]
                        config = {
                            "probability": probability,
                            "after_response": after_response,
                            "max_rows": max_rows,
                            "requests": options.requests,
                            "client": options.client,
                            "interval_ms": options.interval_ms if options.client == "http" else 0,
                        }
                        results[name][key] = _timed(backend, db, env, config)
                        result = results[name][key]
                        print(
                            f"[{name}] {key}: median {result['median_ms']:.2f} ms, "
                            f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.1f} ms, "
                            f"worker {result['worker_median_ms']:.2f} / "
                            f"{result['worker_p99_ms']:.2f} ms, "
                            f"{result['sweeps']} sweeps deleted {result['deleted']} tokens",
                            flush=True,
                        )
                finally:
                    if db != template:
                        backend.drop(db)
        finally:
            if not options.keep:
                backend.drop(template)
    return results


def _timed(backend: Any, db: str, env: dict[str, str], config: dict[str, Any]) -> dict[str, Any]:
    """One configuration's logins, timed in a child process (RUNNER)."""
    done = subprocess.run(
        [PYTHON, "-c", RUNNER],
        env={**backend.env(db, env), "BENCH_SWEEP": json.dumps(config)},
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"[{backend.name}] {config} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def simulate(options: argparse.Namespace) -> dict[str, Any]:
    """Steady issuance with sweeps, on a real SQLite file; the clock is simulated."""
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="bench-sweep-sim-"))
    path = workdir / "simulation.sqlite3"
    path.unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{path.as_posix()}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_bathhouse_backend.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from tokenops.app_settings import get_settings
    from tokenops.sweeping import reset_state, sweep

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        # The simulation's own file: no fsync per insert (the sweeps are what is measured).
        cursor.execute("PRAGMA synchronous = OFF")
    settings.TOKENOPS = {
        **settings.TOKENOPS,
        "SWEEP_PROBABILITY": options.probability,
        "SWEEP_MAX_ROWS": int(options.max_rows),
    }
    conf = get_settings()
    rng = random.Random(1)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "VALUES ('', 0, 'sim', '', '', '', 0, 1, '2026-01-01')"
        )
        user_id = cursor.lastrowid
    lifetime = timedelta(days=7)
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def insert(expiries: list[datetime], created: datetime) -> None:
        stamp = created.replace(tzinfo=None).isoformat(" ")
        rows = [
            (uuid.uuid4().hex, "t", user_id, stamp, e.replace(tzinfo=None).isoformat(" "))
            for e in expiries
        ]
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO token_blacklist_outstandingtoken "
                "(jti, token, user_id, created_at, expires_at) VALUES (%s, %s, %s, %s, %s)",
                rows,
            )

    def sizes(now: datetime) -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM token_blacklist_outstandingtoken")
            total = cursor.fetchone()[0]
            cursor.execute(
                "SELECT COUNT(*) FROM token_blacklist_outstandingtoken WHERE expires_at > %s",
                [now.replace(tzinfo=None).isoformat(" ")],
            )
            return total, cursor.fetchone()[0]

    def run(hours: int, now: datetime, rate: int) -> tuple[datetime, int, list[dict[str, Any]]]:
        """Issue ``rate`` tokens an hour for ``hours``; each sweeps with the probability."""
        trace = []
        issued = 0
        clock = time.monotonic()
        for hour in range(hours):
            # Tokens of this hour, spread over it; each may sweep right after its insert.
            for minute_token in range(rate):
                moment = now + timedelta(seconds=3600 * minute_token / rate)
                insert([moment + lifetime], moment)
                issued += 1
                if rng.random() < conf.sweep_probability:
                    sweep("default", conf=conf, now=moment)
            now += timedelta(hours=1)
            if hour % options.every == options.every - 1:
                total, live = sizes(now)
                trace.append({"hour": hour + 1, "issued": issued, "total": total, "live": live})
        print(f"  simulated {hours} h in {time.monotonic() - clock:.0f} s", flush=True)
        return now, issued, trace

    reset_state()
    print(
        f"steady: {options.rate} tokens/h for {options.weeks} weeks, "
        f"p={options.probability}, SWEEP_MAX_ROWS={int(options.max_rows)}",
        flush=True,
    )
    now, _issued, steady = run(options.weeks * 7 * 24, start, options.rate)
    for point in steady[:: max(1, len(steady) // 12)] + steady[-1:]:
        ratio = point["total"] / max(point["live"], 1)
        print(
            f"  day {point['hour'] / 24:5.1f}: {point['total']:7d} rows, "
            f"{point['live']:7d} live ({ratio:.3f}x)"
        )
    after_first_week = [p for p in steady if p["hour"] > 8 * 24]
    worst = max(p["total"] / max(p["live"], 1) for p in after_first_week)
    print(f"  worst ratio after the first 8 days: {worst:.3f}x (target <= 1.2x)")

    # The backlog: dead rows older than every live one (lower ids), as after a neglected
    # deployment; the steady issuance goes on and the sweeps drain them.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM token_blacklist_outstandingtoken")
    dead_at = now - timedelta(days=30)
    for chunk in range(0, options.backlog, 50_000):
        insert([dead_at] * min(50_000, options.backlog - chunk), dead_at - lifetime)
    reset_state()
    per_token = conf.sweep_probability * conf.sweep_max_rows
    predicted_tokens = options.backlog / per_token
    print(
        f"backlog: {options.backlog} dead rows; predicted drain: {per_token:g} rows per "
        f"issued token, so {predicted_tokens:.0f} tokens = "
        f"{predicted_tokens / options.rate:.1f} h at {options.rate} tokens/h",
        flush=True,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT MAX(id) FROM token_blacklist_outstandingtoken")
        last_dead = cursor.fetchone()[0]

    def dead_left() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM token_blacklist_outstandingtoken WHERE id <= %s",
                [last_dead],
            )
            return cursor.fetchone()[0]

    drain = []
    issued = 0
    hours = 0
    while dead_left() and hours < options.max_drain_hours:
        now, step_issued, _trace = run(options.every, now, options.rate)
        issued += step_issued
        hours += options.every
        left = dead_left()
        predicted = max(0.0, options.backlog - issued * per_token)
        drain.append({"hour": hours, "issued": issued, "left": left, "predicted": predicted})
        print(
            f"  hour {hours:4d}: {issued:6d} issued, {left:8d} dead left "
            f"(predicted {predicted:8.0f})"
        )
    path.unlink(missing_ok=True)
    return {"steady": steady, "worst_ratio": worst, "drain": drain, "per_token": per_token}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["latency", "simulate"], default="latency")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--max-rows", default="500", help="SWEEP_MAX_ROWS; latency: a comma list, one copy each"
    )
    parser.add_argument(
        "--configs", default="off,p=0.1,p=1.0,p=1.0-inline",
        help=f"latency: which to run, of {', '.join(CONFIGS)}",
    )  # fmt: skip
    parser.add_argument(
        "--client", choices=["http", "test"], default="http",
        help="latency: real HTTP to a threaded WSGI server, or Django's test client",
    )  # fmt: skip
    parser.add_argument(
        "--interval-ms", type=float, default=50,
        help="latency, --client http: one login started every this many ms",
    )  # fmt: skip
    parser.add_argument("--days", type=int, default=60, help="latency: issue times span this")
    parser.add_argument(
        "--lifetime",
        default="7d",
        help="latency: lifetime (--days 6: no token dead)",
    )
    parser.add_argument(
        "--sqlite-journal", choices=["delete", "wal"], default="delete",
        help="latency: the SQLite file's journal mode (WAL persists in the file)",
    )  # fmt: skip
    parser.add_argument("--probability", type=float, default=0.1)
    parser.add_argument("--rate", type=int, default=100, help="simulated tokens an hour")
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--every", type=int, default=6, help="simulated hours a sample")
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--max-drain-hours", type=int, default=400)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", help="write the results here")
    options = parser.parse_args()
    results = latency(options) if options.mode == "latency" else simulate(options)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
