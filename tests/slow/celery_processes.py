"""Real Celery processes for the tests: a worker and beat of the example project.

Each process runs ``python -m celery -A my_bathhouse_backend ...`` with the example
project's own settings, a SQLite file given by DATABASE_URL, and Redis as broker and
result backend. Every wait is bounded; ``stop`` always ends the process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.utils import PYTHON, project_env, sqlite_url, wait_until

REDIS_URL = os.environ.get("TOKENOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def celery_env(database: Path) -> dict[str, str]:
    """The environment of a process of the example project on ``database`` and Redis."""
    return project_env(
        # A lock held by another writer fails after 1 s (the task then retries).
        f"{sqlite_url(database)}?timeout=1",
        CELERY_BROKER_URL=REDIS_URL,
        CELERY_RESULT_BACKEND=REDIS_URL,
    )


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
            wait_until(seen, timeout=timeout, what=f"{text!r} in the {self.name} log", every=0.05)
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
    """Start ``celery -A my_bathhouse_backend <kind> <args>`` on ``database``, logging to a file."""
    log_path = log_dir / f"{kind}-{uuid.uuid4().hex[:8]}.log"
    log_file = log_path.open("wb")
    flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
    process = subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "my_bathhouse_backend", kind, *args],
        env=celery_env(database),
        cwd=log_dir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        creationflags=flags,
    )
    return CeleryProcess(kind, process, log_path, log_file)
