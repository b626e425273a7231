"""Helpers every test module shares: run a command, make tokens, wait, find the project.

Fixtures live in conftest.py; this module is imported, conftest.py never is.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import ManagementUtility
from django.db import connections
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tokenops.dbtime import to_db
from tokenops.management.commands import token_purge, token_report
from tokenops.models import PurgeRun
from tokenops.operations import ReportRequest, check_health

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


def without_foreign_keys(using: str = "default") -> Any:
    """The database's foreign-key checks off, as SQL by hand may have them.

    SQLite (PRAGMA foreign_keys=OFF) and MySQL (FOREIGN_KEY_CHECKS=0) allow it; PostgreSQL
    enforces every foreign key, so the rows this makes cannot exist there: the test is
    skipped. Needs autocommit (``transactional_db``): SQLite ignores the pragma inside a
    transaction.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL enforces foreign keys: no orphan row can be committed")
    assert not connection.in_atomic_block, "needs transactional_db"
    return connection.constraint_checks_disabled()


def make_orphans(tokens: Iterable[OutstandingToken], using: str = "default") -> None:
    """Delete these outstanding rows and keep their blacklist rows (foreign keys off)."""
    with without_foreign_keys(using):
        OutstandingToken.objects.using(using).filter(pk__in=[t.pk for t in tokens])._raw_delete(
            using
        )


def delete_user_keeping_tokens(user: Any, using: str = "default") -> None:
    """Delete a user row and keep its tokens' user_id pointing at it (foreign keys off)."""
    with without_foreign_keys(using):
        type(user)._default_manager.using(using).filter(pk=user.pk)._raw_delete(using)


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


def finished_admin_purge(using: str = "default", timeout: float = 60) -> Any:
    """Wait for the admin's background purge thread of ``using`` to end; its history row.

    The thread closes its own connection when done, so the row is read afterwards.
    """
    from tokenops.admin import background_purge
    from tokenops.models import PurgeRun

    thread = wait_until(lambda: background_purge(using), timeout=5, what="the purge thread")
    thread.join(timeout)
    assert not thread.is_alive(), f"the admin purge still runs after {timeout} s"
    return (
        PurgeRun.objects.using(using).filter(dry_run=False).order_by("-started_at", "-pk").first()
    )


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is already full: (read end, write end), both blocking.

    A process given the write end as stdout blocks in its first write, as behind a
    reader that stopped reading (``| less`` left open, a stuck log shipper).
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def drain(read_end: int) -> bytes:
    """Everything in a pipe whose writers are all gone; closes ``read_end``."""
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def kernel_wait(pid: int) -> str:
    """Where the kernel has process ``pid`` waiting (Linux /proc/<pid>/wchan), "" if running."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip("0\n")
    except OSError:
        return ""


def blocked_writing_pipe(process: subprocess.Popen) -> bool:
    """The process sleeps in a write to a full pipe (or has already ended)."""
    return process.poll() is not None or kernel_wait(process.pid).endswith("pipe_write")


def holds_file_lock(pid: int, path: Path) -> bool:
    """Process ``pid`` holds an flock/fcntl lock on ``path`` (Linux /proc/locks)."""
    if not path.exists():
        return False
    inode = f":{path.stat().st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("->" marks a waiter)
        fields = [field for field in fields if field != "->"]
        if len(fields) > 5 and fields[4] == str(pid) and fields[5].endswith(inode):
            return True
    return False


def start_into_full_pipe(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """``manage.py <args>`` with stdout a full pipe nobody reads; the process, the read end."""
    read_end, write_end = full_pipe()
    try:
        process = subprocess.Popen(
            [PYTHON, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    return process, read_end


def signal_when_writing(
    process: subprocess.Popen, read_end: int, sig: int
) -> tuple[int, str, bytes]:
    """Send ``sig`` once the process sleeps writing its output to the full pipe.

    Exit code, stderr, and all the pipe held at the end (the prefill included).
    """
    wait_until(lambda: blocked_writing_pipe(process), timeout=120, what="the blocked write")
    if process.poll() is None:
        process.send_signal(sig)
    _out, err = process.communicate(timeout=60)
    return process.returncode, err, drain(read_end)


def expired_and_live(purgeable: int, live: int = 5, using: str = "default") -> None:
    """``purgeable`` blacklisted tokens expired 2 days ago and ``live`` active ones, no user."""
    now = utcnow()
    make_tokens([now - timedelta(days=2)] * purgeable, blacklisted=True, user=None, using=using)
    make_tokens([now + timedelta(days=2)] * live, user=None, using=using)


def recorded_run(
    outcome: str = PurgeRun.Outcome.OK, *, ago: timedelta, using: str = "default", **fields: Any
) -> PurgeRun:
    """A history row: a purge started ``ago`` that ended 3 s later; ``fields`` override."""
    started = to_db(utcnow() - ago)
    values = {
        "started_at": started,
        "heartbeat_at": started + timedelta(seconds=3),
        "finished_at": started + timedelta(seconds=3),
        "trigger": PurgeRun.Trigger.COMMAND,
        "database": using,
        "outcome": outcome,
        **fields,
    }
    return PurgeRun.objects.using(using).create(**values)


def overdue_everywhere() -> tuple[bool, str, bool]:
    """For the same database state: ``token_report --format json``'s ``purge_overdue``, the
    report's stderr, and ``check_health(...).overdue`` (``--check``, the metric)."""
    result = run_command("token_report", "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    return report["purge_overdue"], result.err, check_health(ReportRequest()).overdue


def run_command_object(command: Any, *args: str) -> Result:
    """Run a command instance's command line (``run_from_argv``) in this process.

    For commands a test derives from the real ones; streams are captured as in
    ``run_command``.
    """
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        command.stdout._out, command.stderr._out = out, err
        try:
            command.run_from_argv(["manage.py", *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


# The signals a command line turns into one interruption.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Sentinel(Exception):
    """Raised by the handler a test installs first: the command's guard must replace it."""


def sentinel_handler(signum: int, frame: Any) -> None:
    raise Sentinel(signum)


class SignalledBeforeThePurge(token_purge.Command):
    """The real token_purge; ``sig`` arrives as handle() begins, before the purge."""

    sig = signal.SIGINT

    def handle(self, **options: Any) -> None:
        signal.raise_signal(self.sig)
        super().handle(**options)


class SignalledAfterTheOutput(token_report.Command):
    """The real token_report; ``sig`` arrives once its output is written."""

    sig = signal.SIGINT

    def execute(self, *args: Any, **options: Any) -> Any:
        output = super().execute(*args, **options)
        signal.raise_signal(self.sig)
        return output


def fill_up(folder: Path, leave: int = 0) -> None:
    """Fill ``folder``'s file system with a file, leaving about ``leave`` bytes free."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def sqlite_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    """``query``'s rows from the SQLite file ``path``, read outside Django."""
    import sqlite3

    with closing(sqlite3.connect(path)) as db:
        return db.execute(query).fetchall()


def driver_error(error: Exception) -> Exception:
    """``error`` as Django raises it: its own OperationalError, the driver's as the cause."""
    from django.db import OperationalError

    try:
        raise OperationalError(*error.args) from error
    except OperationalError as wrapped:
        return wrapped


def sqlite_full_error(folder: Path) -> sqlite3.OperationalError:
    """A real SQLITE_FULL: a database in ``folder`` held to three pages by max_page_count."""
    with closing(sqlite3.connect(folder / "full.sqlite3")) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.execute("PRAGMA max_page_count = 3")
        try:
            db.execute("INSERT INTO t VALUES (?)", ("x" * 20000,))
        except sqlite3.OperationalError as error:
            return error
    raise AssertionError("max_page_count = 3 let 20,000 bytes in")


def out_of_space_errors() -> list[Exception]:
    """The drivers' own out-of-space errors, as PostgreSQL and MariaDB report them."""
    import MySQLdb
    import psycopg

    return [
        psycopg.errors.DiskFull('could not extend file "base/1/2": No space left on device'),
        psycopg.errors.OutOfMemory("out of memory"),
        MySQLdb.OperationalError(1114, "The table 'token_blacklist_outstandingtoken' is full"),
        MySQLdb.OperationalError(1021, "Disk full (/tmp/#sql_1.MAI); waiting for someone"),
        MySQLdb.OperationalError(3, "Error writing file './ib' (Errcode: 28 \"No space left\")"),
        MySQLdb.OperationalError(1206, "The total number of locks exceeds the lock table size"),
        MySQLdb.OperationalError(1197, "Multi-statement transaction required more than"),
    ]


def other_driver_errors() -> list[Exception]:
    """Driver errors that are not about space (a deadlock, a permission)."""
    import MySQLdb
    import psycopg

    return [
        psycopg.errors.DeadlockDetected("deadlock detected"),
        MySQLdb.OperationalError(3, "Error writing file './x' (Errcode: 13 \"Permission denied\")"),
        MySQLdb.OperationalError(1213, "Deadlock found when trying to get lock"),
    ]


def login(client: Any, username: str = "alice", password: str = "pw") -> Any:  # noqa: S107
    """POST the example project's token-obtain endpoint; the response (200: a token pair)."""
    return client.post("/api/token/", {"username": username, "password": password})


def refresh(client: Any, token: str) -> Any:
    """POST the refresh endpoint (rotation on: a new refresh token, the old one blacklisted)."""
    return client.post("/api/token/refresh/", {"refresh": token})
