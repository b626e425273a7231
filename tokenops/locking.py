"""One real purge per database at a time: a lock that dies with its holder.

Every starter (command, wrapper, Celery task on any host, admin page) meets where the
tokens are, so the lock lives there too:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``). Advisory locks are
  scoped to the database; the server drops it when the session ends.
- MySQL/MariaDB: a named lock (``GET_LOCK(name, 0)``), named after the database (user locks
  are server-wide); the server drops it when the connection ends.
- SQLite file: an OS lock on a file beside the database (``<database>.tokenops-purge.lock``),
  ``fcntl.flock`` on POSIX and ``msvcrt.locking`` on Windows. The operating system drops it
  when the process ends, however it ends. The file itself stays; only the lock matters.
- In-memory SQLite: the database lives in this process, so a process-local lock does.

No lock is waited for: a starter that finds it taken is told at once (``held`` is False),
after one second try PROBE_GRACE later on SQLite, where a sweep's probe may hold the file
for microseconds.
Nothing here knows of the purge history.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from django.db import DatabaseError, connections
from django.utils.translation import gettext as _

from .errors import TokenopsError, first_line

# pg_try_advisory_lock(bigint): one fixed key; PostgreSQL scopes it to the database.
PG_KEY = zlib.crc32(b"tokenops.purge")
MYSQL_NAME_LIMIT = 64
LOCK_SUFFIX = ".tokenops-purge.lock"

# How long a purge that found the SQLite lock file taken waits before its second try.
PROBE_GRACE = 0.02

_memory_locks: dict[str, threading.Lock] = {}
_memory_guard = threading.Lock()


def mysql_lock_name(database: str) -> str:
    """GET_LOCK names are server-wide (64 characters at most): one per database."""
    name = f"tokenops.purge:{database}"
    if len(name) > MYSQL_NAME_LIMIT:
        name = "tokenops.purge:" + hashlib.sha256(database.encode()).hexdigest()[:40]
    return name


def sqlite_lock_path(using: str) -> Path | None:
    """The lock file beside a SQLite database file; None for an in-memory database."""
    connection = connections[using]
    if connection.is_in_memory_db():
        return None
    name = str(connection.settings_dict["NAME"])
    if name.startswith("file:"):  # a URI filename: the path ends at the query string
        name = name[5:].split("?", 1)[0]
    path = Path(name)
    return path.with_name(path.name + LOCK_SUFFIX)


def _lock_file(handle: IO[bytes]) -> bool:
    """Take the OS lock on ``handle`` without waiting; False when another holder has it."""
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock_file(handle: IO[bytes]) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def _sqlite_lock(using: str) -> Iterator[bool]:
    path = sqlite_lock_path(using)
    if path is None:
        with _memory_lock(using) as held:
            yield held
        return
    try:
        handle = open(path, "a+b")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise TokenopsError(
            _("Cannot open the purge lock file %(path)s: %(error)s")
            % {"path": str(path), "error": first_line(exc)}
        ) from exc
    try:
        # A sweep's probe (purge_running) holds the lock for microseconds: look again
        # before telling this purge that another one runs.
        with _file_locked(handle, retry_after=PROBE_GRACE) as held:
            yield held
    finally:
        handle.close()


@contextmanager
def _file_locked(handle: IO[bytes], *, retry_after: float | None = None) -> Iterator[bool]:
    """The OS lock on ``handle`` without waiting (one more try after ``retry_after`` s)."""
    held = _lock_file(handle)
    if not held and retry_after:
        time.sleep(retry_after)
        held = _lock_file(handle)
    try:
        yield held
    finally:
        if held:
            with suppress(OSError):
                _unlock_file(handle)


@contextmanager
def _memory_lock(using: str) -> Iterator[bool]:
    with _memory_guard:
        lock = _memory_locks.setdefault(using, threading.Lock())
    held = lock.acquire(blocking=False)
    try:
        yield held
    finally:
        if held:
            lock.release()


def _scalar(using: str, sql: str, params: list[object]) -> object:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else row[0]


@contextmanager
def _server_lock(using: str, take: str, release: str, params: list[object]) -> Iterator[bool]:
    held = bool(_scalar(using, take, params))
    try:
        yield held
    finally:
        # A connection lost meanwhile took the lock with it: nothing left to release.
        if held and connections[using].connection is not None:
            with suppress(DatabaseError):
                _scalar(using, release, params)


@contextmanager
def purge_lock(using: str) -> Iterator[bool]:
    """Hold the purge lock of database ``using`` for the block; yields whether it is held.

    Never waits. On PostgreSQL and MySQL the lock belongs to ``using``'s connection: a
    connection closed inside the block (a lost server) loses it too.
    """
    connection = connections[using]
    vendor = connection.vendor
    if vendor == "postgresql":
        with _server_lock(
            using, "SELECT pg_try_advisory_lock(%s)", "SELECT pg_advisory_unlock(%s)", [PG_KEY]
        ) as held:
            yield held
    elif vendor == "mysql":
        name = mysql_lock_name(str(connection.settings_dict["NAME"]))
        with _server_lock(
            using, "SELECT GET_LOCK(%s, 0)", "SELECT RELEASE_LOCK(%s)", [name]
        ) as held:
            yield held
    elif vendor == "sqlite":
        with _sqlite_lock(using) as held:
            yield held
    else:  # another backend: a lock for this process at least
        with _memory_lock(f"{os.getpid()}:{using}") as held:
            yield held


def purge_running(using: str) -> bool:
    """Does a purge hold the purge lock of ``using`` now? Asked by every in-app sweep.

    Read-only on the servers (``pg_locks``, ``IS_FREE_LOCK``), so asking never delays a
    purge. SQLite has no such question: the lock file is tried without waiting and let go
    at once (a purge that meets this probe tries again after PROBE_GRACE).
    """
    connection = connections[using]
    vendor = connection.vendor
    if vendor == "postgresql":
        # pg_try_advisory_lock(bigint) shows as classid = high half, objid = low half.
        return bool(
            _scalar(
                using,
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1 AND granted)",
                [PG_KEY >> 32, PG_KEY & 0xFFFFFFFF],
            )
        )
    if vendor == "mysql":
        name = mysql_lock_name(str(connection.settings_dict["NAME"]))
        return _scalar(using, "SELECT IS_FREE_LOCK(%s)", [name]) == 0
    if vendor == "sqlite":
        with _sqlite_lock_probe(using) as held:
            return not held
    with _memory_guard:
        lock = _memory_locks.get(f"{os.getpid()}:{using}")
    return lock is not None and lock.locked()


@contextmanager
def _sqlite_lock_probe(using: str) -> Iterator[bool]:
    """The SQLite purge lock taken without waiting (and without the purge's second try)."""
    path = sqlite_lock_path(using)
    if path is None:
        with _memory_guard:
            lock = _memory_locks.get(using)
        yield lock is None or not lock.locked()
        return
    with open(path, "a+b") as handle, _file_locked(handle) as held:
        yield held
