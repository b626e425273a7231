"""Time the admin's "Token hygiene" page at full size (issue 13): render, confirm, click.

For each backend it copies a seeded database kept by ``bench_purge.py --keep-seed`` (default
``bench_seed_1000000``), then, in a child process with the example project's settings, logs
an admin user in through Django's test client and times: the page (three renders), the
confirmation page, and the confirmed POST of "Purge now" (click to response: the purge runs
in a thread of that process, ``TOKENOPS["ADMIN_PURGE"] = "thread"``). It then waits for the
purge's history row to end and reports its outcome and duration.

    python scripts/bench_purge.py --count 1000000 --keep-seed --skip-flush --skip-floor
    python scripts/bench_admin.py --backends sqlite,postgresql,mariadb

Linux only, like bench_purge.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_purge import PYTHON, MariaDB, Postgres, SQLite, migrate, reachable  # noqa: E402

CHILD = """
import json, os, re, statistics, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_bathhouse_backend.settings")
import django
django.setup()
from django.conf import settings
settings.TOKENOPS = {**getattr(settings, "TOKENOPS", {}), "ADMIN_PURGE": "thread"}
from django.contrib.auth import get_user_model
from django.test import Client
from tokenops.models import PurgeRun

user, _ = get_user_model().objects.get_or_create(
    username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
)
client = Client()
client.force_login(user)
page, confirm = "/admin/tokenops/tokenhygiene/", "/admin/tokenops/tokenhygiene/purge/"

def timed(call):
    started = time.monotonic()
    response = call()
    return time.monotonic() - started, response

renders = []
for _ in range(3):
    seconds, response = timed(lambda: client.get(page))
    assert response.status_code == 200, response.status_code
    renders.append(seconds)
confirmation, response = timed(lambda: client.get(confirm))
signed = re.search(r'name="cutoff" value="([^"]+)"', response.content.decode()).group(1)
click, response = timed(lambda: client.post(confirm, {"confirm": "yes", "cutoff": signed}))
assert response.status_code == 302, response.status_code
during, response = timed(lambda: client.get(page))
deadline = time.monotonic() + 600
run = None
while time.monotonic() < deadline:
    run = PurgeRun.objects.filter(dry_run=False).order_by("-started_at").first()
    if run is not None and run.outcome != "running":
        break
    time.sleep(0.5)
print(json.dumps({
    "render_s": renders,
    "confirmation_s": confirmation,
    "click_to_response_s": click,
    "render_during_purge_s": during,
    "outcome": run.outcome if run else None,
    "purge_s": (run.finished_at - run.started_at).total_seconds()
    if run and run.finished_at else None,
    "deleted": run.outstanding_deleted if run else None,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb")
    parser.add_argument("--seed-db", default="bench_seed_1000000")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tokenops-bench"
    )
    options = parser.parse_args()
    env = {
        **os.environ,
        "SIMPLE_JWT_LEEWAY": "0",
        "PYTHONPATH": str(ROOT),
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    env.pop("DATABASE_URL", None)
    available = {
        "sqlite": (SQLite(options.workdir), None),
        "postgresql": (Postgres(), 5432),
        "mariadb": (MariaDB(), 3306),
    }
    results = {}
    for name in options.backends.split(","):
        backend, port = available[name.strip()]
        if port is not None and not reachable(port):
            print(f"[{name}] not reachable: skipped", flush=True)
            continue
        if not backend.exists(options.seed_db):
            print(f"[{name}] no {options.seed_db}: run bench_purge.py --keep-seed", flush=True)
            continue
        migrate(backend, options.seed_db, env)
        db = "bench_admin"
        backend.copy(options.seed_db, db, env)
        try:
            done = subprocess.run(
                [PYTHON, "-c", CHILD],
                env=backend.env(db, env),
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"[{name}] failed: {done.stderr.strip()[-2000:]}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"[{name}] {json.dumps(results[name])}", flush=True)
        finally:
            backend.drop(db)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
