"""Fixtures only; the helpers they wrap live in tests/utils.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import utils


@pytest.fixture
def manage() -> Callable[..., utils.Result]:
    """``utils.run_command``: needs ``transactional_db`` (the command line closes connections)."""
    return utils.run_command


@pytest.fixture
def make_tokens(db: None) -> Callable[..., list]:
    """``utils.make_tokens`` with database access."""
    return utils.make_tokens


@pytest.fixture
def report_population(db: None) -> None:
    """``utils.report_population``: tokens in every state, one of a deleted user."""
    utils.report_population()


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, migrated SQLite file that subprocesses can use through DATABASE_URL."""
    path = tmp_path_factory.mktemp("db") / "project.sqlite3"
    done = utils.run_manage("migrate", "-v", "0", env=utils.project_env(utils.sqlite_url(path)))
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A current directory that is not the project (Task Scheduler starts in System32)."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


@pytest.fixture
def purge_in_thread(settings: Any) -> None:
    """The admin's "Purge now" runs in a thread of this process, not as a Celery task."""
    settings.TOKENOPS = {**settings.TOKENOPS, "ADMIN_PURGE": "thread"}


@pytest.fixture
def sqlite_file() -> Path:
    """The test database's SQLite file (skips on a server database)."""
    from django.db import connections

    connection = connections["default"]
    if connection.vendor != "sqlite":
        pytest.skip("needs the SQLite file itself")
    return Path(connection.settings_dict["NAME"])


@pytest.fixture
def sentinel_handlers() -> Iterator[None]:
    """SIGINT and SIGTERM raise utils.Sentinel (never end pytest); put back afterwards."""
    previous = {sig: signal.signal(sig, utils.sentinel_handler) for sig in utils.SIGNALS}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="module")
def seeded_sqlite(migrated_sqlite: Path) -> Path:
    """``migrated_sqlite`` with 20,000 purgeable blacklisted tokens and 5 live ones (4.7 MB)."""
    code = "from tests.utils import expired_and_live; expired_and_live(20000, 5)"
    env = utils.project_env(utils.sqlite_url(migrated_sqlite))
    done = utils.run_manage("shell", "-v", "0", "-c", code, env=env)
    assert done.returncode == 0, done.stderr
    return migrated_sqlite


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a disk that fills up for real (needs root, as CI runs; else skipped)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    path = tmp_path / "small"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def sweeps_on(settings: Any) -> Iterator[None]:
    """Every issued token sweeps (SWEEP_PROBABILITY 1.0); the sweep module starts clean."""
    from tokenops import sweeping

    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_PROBABILITY": 1.0}
    sweeping.reset_state()
    yield
    sweeping.reset_state()
