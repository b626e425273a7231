"""Shared fixtures: token rows with chosen expiries, and running manage.py in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import ManagementUtility
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def stored(moment: datetime) -> datetime:
    """``moment`` (aware UTC) as simplejwt stores it: naive UTC when USE_TZ is False."""
    return moment if settings.USE_TZ else moment.astimezone(timezone.utc).replace(tzinfo=None)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def manage(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``manage.py <args>`` through Django's real command-line path.

    Needs ``transactional_db`` (the command-line path closes connections at the end).
    """

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = 0
        try:
            ManagementUtility(["manage.py", *args]).execute()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def make_tokens(db: None) -> Callable[..., list[OutstandingToken]]:
    """Create OutstandingToken rows expiring at the given aware datetimes."""

    def make(
        expiries: Iterable[datetime],
        *,
        blacklisted: bool = False,
        user: object | None = None,
        using: str = "default",
    ) -> list[OutstandingToken]:
        if user is None:
            user, _ = (
                get_user_model()._default_manager.db_manager(using).get_or_create(username="alice")
            )
        rows = []
        for expires in expiries:
            row = OutstandingToken.objects.using(using).create(
                user=user,
                jti=uuid.uuid4().hex,
                token="header.payload.signature",
                created_at=stored(utcnow()),
                expires_at=stored(expires),
            )
            if blacklisted:
                BlacklistedToken.objects.using(using).create(token=row)
            rows.append(row)
        return rows

    return make


ROOT = Path(__file__).resolve().parent.parent


def run_manage(
    *args: str, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess:
    """Run ``python manage.py <args>`` as a real process, like a user or a scheduler does."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "my_bathhouse_backend.settings"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        timeout=300,
        check=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, migrated SQLite file that subprocesses can use through DATABASE_URL."""
    path = tmp_path_factory.mktemp("db") / "project.sqlite3"
    done = run_manage("migrate", "-v", "0", env={"DATABASE_URL": sqlite_url(path)})
    assert done.returncode == 0, done.stderr
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


PLAIN_SETTINGS = """
SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework_simplejwt.token_blacklist",
    "tokenops",
]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {database!r}}}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""


def write_plain_settings(folder: Path, module: str, database: str) -> str:
    """Settings of a project with only simplejwt's blacklist and tokenops (no example project).

    Returns the module name, importable with ``folder`` on PYTHONPATH.
    """
    (folder / f"{module}.py").write_text(PLAIN_SETTINGS.format(database=database), encoding="utf-8")
    return module


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A current directory that is not the project (Task Scheduler starts in System32)."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path
