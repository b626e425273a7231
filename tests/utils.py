"""Helpers every test module shares: run a command, make tokens, wait, find the project.

Fixtures live in conftest.py; this module is imported, conftest.py never is.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import ManagementUtility
from django.db import connections
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EXAMPLE_SETTINGS = "my_bathhouse_backend.settings"
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def stored(moment: datetime) -> datetime:
    """``moment`` (aware UTC) as simplejwt stores it: naive UTC when USE_TZ is False."""
    return moment if settings.USE_TZ else moment.astimezone(UTC).replace(tzinfo=None)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_command(*args: str) -> Result:
    """Run ``manage.py <args>`` in this process through Django's real command-line path.

    Exit code, stdout and stderr as a user sees them (argparse errors and CommandError
    included). The command-line path closes connections at the end: use it from tests
    with ``transactional_db``.
    """
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            ManagementUtility(["manage.py", *args]).execute()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def project_env(
    database_url: str | None = None, settings_module: str = EXAMPLE_SETTINGS, **extra: str
) -> dict[str, str]:
    """The environment of a real process of the example project (or of ``settings_module``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(DJANGO_SETTINGS_MODULE=settings_module, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def start_manage(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """Start ``python manage.py <args>`` as its own process, output captured as text."""
    return subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), *args],
        cwd=popen.pop("cwd", ROOT),
        env=project_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=popen.pop("text", True),
        **popen,
    )


def run_manage(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, **popen: Any
) -> subprocess.CompletedProcess:
    """Run ``python manage.py <args>`` as a real process, like a user or a scheduler does."""
    process = start_manage(*args, env=env, **popen)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


def database_url(using: str = "default") -> str:
    """A DATABASE_URL for the database this test process is using (the test database)."""
    conn = connections[using].settings_dict
    engine = conn["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return sqlite_url(Path(conn["NAME"]).resolve())
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[engine]
    user = quote(conn.get("USER") or "")
    password = f":{quote(conn['PASSWORD'])}" if conn.get("PASSWORD") else ""
    host = conn.get("HOST") or "127.0.0.1"
    port = f":{conn['PORT']}" if conn.get("PORT") else ""
    return f"{scheme}://{user}{password}@{host}{port}/{conn['NAME']}"


def make_tokens(
    expiries: Iterable[datetime],
    *,
    blacklisted: bool | Iterable[bool] = False,
    user: Any = "alice",
    using: str = "default",
    chunk: int = 5000,
) -> list[OutstandingToken]:
    """Insert OutstandingToken rows expiring at the given aware datetimes, fast (bulk).

    ``blacklisted``: all, none, or one flag per row. ``user``: a username (created when
    missing), a user, or None for a token of a deleted user.
    """
    if isinstance(user, str):
        user, _ = get_user_model()._default_manager.db_manager(using).get_or_create(username=user)
    expiries = list(expiries)
    flags = [blacklisted] * len(expiries) if isinstance(blacklisted, bool) else list(blacklisted)
    now = stored(utcnow())
    made: list[OutstandingToken] = []
    for start in range(0, len(expiries), chunk):
        rows = [
            OutstandingToken(
                user=user,
                jti=uuid.uuid4().hex,
                token="header.payload.signature",
                created_at=now,
                expires_at=stored(expires),
            )
            for expires in expiries[start : start + chunk]
        ]
        OutstandingToken.objects.using(using).bulk_create(rows)
        # MySQL/MariaDB may not return the new keys from a bulk insert: read them back.
        by_jti = dict(
            OutstandingToken.objects.using(using)
            .filter(jti__in=[row.jti for row in rows])
            .values_list("jti", "pk")
        )
        for row in rows:
            row.pk = by_jti[row.jti]
        made.extend(rows)
    BlacklistedToken.objects.using(using).bulk_create(
        [BlacklistedToken(token=row) for row, flag in zip(made, flags, strict=True) if flag],
        batch_size=chunk,
    )
    return made


OUTSTANDING_FIELDS = ("pk", "jti", "token", "user_id", "created_at", "expires_at")


def snapshot(using: str = "default") -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every column of every row of both tables, in primary-key order."""
    outstanding = list(
        OutstandingToken.objects.using(using).order_by("pk").values_list(*OUTSTANDING_FIELDS)
    )
    blacklisted = list(
        BlacklistedToken.objects.using(using)
        .order_by("pk")
        .values_list("pk", "token_id", "blacklisted_at")
    )
    return outstanding, blacklisted


def orphan_blacklist_rows(using: str = "default") -> int:
    """Blacklist rows whose outstanding row is gone (a FK the database may not enforce)."""
    ids = OutstandingToken.objects.using(using).values("pk")
    return BlacklistedToken.objects.using(using).exclude(token_id__in=ids).count()


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, every: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


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


def expired_and_active(using: str = "default") -> None:
    """Nine tokens: five purgeable (two of them blacklisted, expired 2-3 days ago), four active.

    Needs database access (``db`` or ``transactional_db``).
    """
    now = utcnow()
    make_tokens([now - timedelta(days=3)] * 3, using=using)
    make_tokens([now - timedelta(days=2)] * 2, blacklisted=True, using=using)
    make_tokens([now + timedelta(days=1)] * 4, using=using)


@contextmanager
def dropped(model: Any, using: str = "default") -> Iterator[None]:
    """``model``'s table is gone for the block (as if never migrated).

    The table is created again, empty, afterwards. Needs ``transactional_db``.
    """
    with connections[using].schema_editor() as editor:
        editor.delete_model(model)
    try:
        yield
    finally:
        with connections[using].schema_editor() as editor:
            editor.create_model(model)


def report_population() -> None:
    """2 active, 1 inside a 60 s LEEWAY, 4 expired long ago; 1 token of a deleted user.

    Needs database access.
    """
    now = utcnow()
    users = get_user_model()._default_manager
    bob = users.create(username="bob")
    gone = users.create(username="gone")
    make_tokens([now + timedelta(days=2)], blacklisted=True)
    make_tokens([now + timedelta(hours=1)], user=bob)
    make_tokens([now - timedelta(seconds=30)], blacklisted=True)
    make_tokens([now - timedelta(hours=2)], blacklisted=True, user=bob)
    make_tokens([now - timedelta(days=3), now - timedelta(days=10)])
    make_tokens([now - timedelta(days=40)], user=gone)
    gone.delete()


def line_starting(text: str, prefix: str) -> str:
    """The one line of ``text`` that starts with ``prefix`` (indentation ignored), stripped."""
    matches = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    assert len(matches) == 1, (prefix, matches)
    return matches[0]


def build_wheel(out: Path) -> Path:
    """Build this checkout's wheel into ``out`` (pip wheel, as a release would) and return it."""
    subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("tokenops-*.whl")
    return built
