"""Fixtures only; the helpers they wrap live in tests/utils.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
