"""The process around a command: console streams, the progress bar, signals, the login name.

Windows gives a redirected stdout (as Task Scheduler jobs have) the ANSI or OEM code
page with strict errors; a username or message it cannot encode would raise.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import IO, Any


def make_streams_safe() -> None:
    """Let unencodable characters degrade to '?' on the process's stdout and stderr."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")


class BarProgress:
    """tqdm behind the ``purging.Progress`` protocol."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="rows", file=self.stream, ascii=True, leave=False)

    def advance(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def terminal_progress(stream: IO[str], *, enabled: bool) -> BarProgress | None:
    """A progress bar on a terminal, nothing anywhere else (a log file wants no bar)."""
    isatty = getattr(stream, "isatty", None)
    if enabled and isatty is not None and isatty():
        return BarProgress(stream)
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl+C so the purge stops between statements and says so."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def login_name() -> str:
    """Who runs this process, as the OS knows it ("" when it cannot tell)."""
    try:
        return getpass.getuser()
    except Exception:  # no login name is not an error
        return ""
