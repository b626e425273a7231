"""The app keeps working while token_purge runs on the same SQLite file.

A 250,000-row file (real tokens from seed_demo_tokens, multiplied in SQL with fresh
random jti values) is purged with time-sized batches (no --batch-size) by one process,
while a second process logs in, rotates with blacklisting and logs out through simplejwt
with Django's default SQLite timeout. No write may fail ("database is locked"), no token
row of the app may be lost, and every token must still be accepted or refused as before.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.utils import PYTHON, ROOT, project_env, run_manage, sqlite_url, start_manage, wait_until

WRITER = Path(__file__).resolve().parent / "purge_app_writer.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="SQLite file locking; runs in the sqlite run"
    ),
]

SEEDED = 5000
COPIES = 50  # 250,000 rows


def build_database(path: Path) -> None:
    env = project_env(sqlite_url(path))
    assert run_manage("migrate", "-v0", env=env).returncode == 0
    done = run_manage(
        "seed_demo_tokens", "--count", str(SEEDED), "--users", "50", "--seed", "7", env=env
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(path) as db:
        db.execute(
            f"""
            WITH RECURSIVE copy(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM copy
                                       WHERE n < {COPIES - 1})
            INSERT INTO token_blacklist_outstandingtoken
                (jti, token, created_at, expires_at, user_id)
            SELECT lower(hex(randomblob(16))), token, created_at, expires_at, user_id
            FROM token_blacklist_outstandingtoken, copy
            """  # noqa: S608 - constants only
        )
        db.execute(
            """
            INSERT INTO token_blacklist_blacklistedtoken (token_id, blacklisted_at)
            SELECT id, created_at FROM token_blacklist_outstandingtoken
            WHERE id > ? AND abs(random()) % 10 < 3
            """,
            (SEEDED,),
        )
        total = db.execute("SELECT count(*) FROM token_blacklist_outstandingtoken").fetchone()
    assert total == (SEEDED * COPIES,)


def test_app_writes_while_a_purge_runs(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    build_database(path)
    env = project_env(sqlite_url(path))
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    app = subprocess.Popen(
        [PYTHON, str(WRITER), "--stop", stop, "--ready", ready],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: ready.exists() or app.poll() is not None, timeout=60, what="the app")
        assert app.poll() is None, app.communicate()
        started = time.time()
        purge = start_manage("token_purge", "--format", "json", env=env)
        purge_out, purge_err = purge.communicate(timeout=300)
        ended = time.time()
    finally:
        stop.touch()
        app_out, app_err = app.communicate(timeout=120)

    assert (purge.returncode, purge_err) == (0, ""), purge_err
    result = json.loads(purge_out)
    assert result["deleted"] == result["purgeable"]
    assert result["deleted"]["outstanding"] > 200_000
    assert app.returncode == 0, app_err
    report = json.loads(app_out)
    during = [moment for moment in report["finished_at"] if started < moment < ended]
    assert len(during) >= 10, (len(during), ended - started)
    assert report["errors"] == [], report["longest_write_seconds"]
    assert report["wrong"] == []
    assert report["lost_rows"] == 0
    with sqlite3.connect(path) as db:
        orphans = db.execute(
            "SELECT count(*) FROM token_blacklist_blacklistedtoken b LEFT JOIN "
            "token_blacklist_outstandingtoken o ON o.id = b.token_id WHERE o.id IS NULL"
        ).fetchone()
    assert orphans == (0,)
