"""Real Celery processes for the tests: a worker and beat of the example project.

Each process runs ``python -m celery -A my_bathhouse_backend ...`` with the example
project's own settings, a SQLite file given by DATABASE_URL, and Redis as broker and
result backend. Every wait is bounded; ``stop`` always ends the process.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TOKENOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def project_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment of a process of the example project on ``database``."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="my_bathhouse_backend.settings",
        # A lock held by another writer fails after 1 s (the task then retries).
        DATABASE_URL=f"sqlite:///{database.as_posix()}?timeout=1",
        CELERY_BROKER_URL=REDIS_URL,
        CELERY_RESULT_BACKEND=REDIS_URL,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def manage(database: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=project_env(database),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(condition: Callable[[], Any], timeout: float, what: str, *, every: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class CeleryProcess:
    """One worker or beat process with its output in a log file."""

    name: str
    process: subprocess.Popen
    log_path: Path
    log_file: IO[bytes]

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ensure_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with code {self.process.returncode}:\n{self.log()}"
            )

    def wait_for_log(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            self.ensure_running()
            return text in self.log()

        try:
            wait_for(seen, timeout, f"{text!r} in the {self.name} log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from None

    def stop(self) -> None:
        """Warm shutdown (SIGTERM, or CTRL_BREAK on Windows), then kill if it hangs."""
        try:
            if self.process.poll() is None:
                if os.name == "nt":
                    self.process.send_signal(signal.CTRL_BREAK_EVENT)
                else:
                    self.process.terminate()
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT)
        finally:
            self.log_file.close()


def start_celery(kind: str, args: Iterable[str], database: Path, log_dir: Path) -> CeleryProcess:
    log_path = log_dir / f"{kind}-{uuid.uuid4().hex[:8]}.log"
    log_file = log_path.open("wb")
    flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "my_bathhouse_backend", kind, *args],
        env=project_env(database),
        cwd=log_dir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        creationflags=flags,
    )
    return CeleryProcess(kind, process, log_path, log_file)


def stamp(moment: datetime) -> str:
    """A datetime as Django stores it in SQLite with USE_TZ: naive UTC text."""
    naive = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return naive.isoformat(" ", timespec="microseconds")


def insert_tokens(database: Path, expiries: Iterable[datetime], *, blacklisted: bool) -> set[str]:
    """Insert OutstandingToken rows (and their blacklist rows); return their jtis."""
    now = stamp(datetime.now(timezone.utc))
    jtis = set()
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
            jtis.add(jti)
    return jtis


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
