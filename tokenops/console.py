"""The process around a command: console streams, the progress bar, signals, the login name.

Windows gives a redirected stdout (as Task Scheduler jobs have) the ANSI or OEM code
page with strict errors; a username or message it cannot encode would raise.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import IO, Any

from .errors import cause_of


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


_GUARDED = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Raise the interruption once; later signals would cut the cleanup that keeps it true.

    The history row, the rollback of a cut batch and the one line on stderr are written
    after the first signal: a second Ctrl+C or SIGTERM is ignored until the guard ends.
    """
    for number in _GUARDED:
        if signal.getsignal(number) is _interrupt:
            signal.signal(number, signal.SIG_IGN)
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def _guard(numbers: tuple[int, ...]) -> dict[int, Any]:
    """Install ``_interrupt`` for ``numbers``; the handlers it replaced, to put back."""
    previous: dict[int, Any] = {}
    for number in numbers:
        current = signal.getsignal(number)
        # An inherited SIG_IGN (nohup, a background job) is the starter's choice; a
        # guard further out already does the work.
        if current in (signal.SIG_IGN, _interrupt):
            continue
        previous[number] = signal.signal(number, _interrupt)
    return previous


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt and SIGTERM ``Terminated``, once, for the duration.

    Python's own SIGINT handler raises again at every Ctrl+C and the default SIGTERM
    action ends the process without a word; a command line wants one interruption it can
    report. Main thread only; the previous handlers come back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _guard(_GUARDED)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _guard((signal.SIGTERM,))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or Terminated) ``exc`` is, or hides (see ``cause_of``)."""
    found = cause_of(exc, (KeyboardInterrupt,))
    return found if isinstance(found, KeyboardInterrupt) else None


def discard_pending_output(stream: IO[str]) -> None:
    """Point ``stream``'s file descriptor at the null device.

    After an interrupted write to a full pipe, whatever is still buffered would be flushed
    at exit and block the process again; the command has said the output is incomplete.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file (a StringIO in tests, a logger): nothing left to block
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def login_name() -> str:
    """Who runs this process, as the OS knows it ("" when it cannot tell)."""
    try:
        return getpass.getuser()
    except Exception:  # no login name is not an error
        return ""
