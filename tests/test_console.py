"""The process around a command: console encodings, the progress bar, SIGTERM, the login name.

Redirected output on Windows uses the console code page: it must degrade, never crash.
"""

import io
import json
import os
import signal
import sys

import pytest
from django.db import OperationalError

from tests.utils import (
    SIGNALS,
    Result,
    SignalledAfterTheOutput,
    SignalledBeforeThePurge,
    project_env,
    run_command_object,
    run_manage,
    sentinel_handler,
    sqlite_url,
)
from tokenops import console
from tokenops.console import (
    BarProgress,
    Terminated,
    interrupt_behind,
    interrupts_raised,
    login_name,
    make_streams_safe,
    terminal_progress,
    terminate_as_interrupt,
)

NAME = "Jürgen-Иван-😀"
ENCODINGS = ["cp866", "cp1251", "cp1252", "ascii"]


@pytest.fixture(scope="module")
def database(migrated_sqlite):
    url = sqlite_url(migrated_sqlite)
    code = (
        "from django.contrib.auth.models import User;"
        "from rest_framework_simplejwt.tokens import RefreshToken;"
        f"u = User.objects.create(username={NAME!r});"
        "[RefreshToken.for_user(u) for _ in range(3)]"
    )
    done = run_manage("shell", "-c", code, env=project_env(url))
    assert done.returncode == 0, done.stderr
    return url


def run_encoded(encoding, database, *args):
    """``manage.py <args>`` with stdout and stderr in ``encoding``, output as bytes."""
    return run_manage(*args, env=project_env(database, PYTHONIOENCODING=encoding), text=False)


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_report_table_degrades_unencodable_names(database, encoding):
    done = run_encoded(encoding, database, "token_report")
    assert (done.returncode, done.stderr) == (0, b"")
    text = done.stdout.decode(encoding)
    expected = NAME.encode(encoding, "replace").decode(encoding)
    assert any(line.startswith(expected) and line.endswith(" 3") for line in text.splitlines()), (
        text
    )


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_json_stays_exact_on_any_code_page(database, encoding):
    done = run_encoded(encoding, database, "token_report", "--format", "json")
    assert done.returncode == 0
    assert json.loads(done.stdout.decode(encoding))["top_users"][0]["username"] == NAME


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_errors_with_unencodable_input_are_still_one_line(database, encoding):
    done = run_encoded(encoding, database, "token_purge", "--older-than", "7д😀")
    assert done.returncode == 2
    err = done.stderr.decode(encoding)
    assert err.startswith("manage.py token_purge: error: argument --older-than: Invalid duration")
    assert err.count("\n") == 1


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_safe_streams_replace_what_they_cannot_encode(monkeypatch, encoding):
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding=encoding))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding=encoding))
    with pytest.raises(UnicodeEncodeError):
        sys.stdout.write(NAME)
    make_streams_safe()
    assert (sys.stdout.errors, sys.stderr.errors) == ("replace", "replace")
    for stream, raw in ((sys.stdout, out), (sys.stderr, err)):
        stream.write(NAME)
        stream.flush()
        assert raw.getvalue().decode(encoding) == NAME.encode(encoding, "replace").decode(encoding)


def test_safe_streams_leave_other_streams_alone(monkeypatch):
    captured = io.StringIO()
    lenient = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="backslashreplace")
    monkeypatch.setattr(sys, "stdout", captured)
    monkeypatch.setattr(sys, "stderr", lenient)
    make_streams_safe()
    assert sys.stdout is captured
    assert lenient.errors == "backslashreplace"


@pytest.fixture
def tty():
    """Both ends of a real pseudo-terminal: the one a bar is written to, and the reader."""
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    stream = open(follower, "w", encoding="utf-8")  # noqa: SIM115
    yield stream, leader
    stream.close()
    os.close(leader)


def test_progress_bar_only_on_a_terminal(tty):
    stream, _leader = tty
    assert stream.isatty()
    bar = terminal_progress(stream, enabled=True)
    assert isinstance(bar, BarProgress)
    assert bar.stream is stream
    assert terminal_progress(stream, enabled=False) is None


def test_no_progress_bar_in_a_file_or_a_pipe(tmp_path):
    read_end, write_end = os.pipe()
    with (
        open(tmp_path / "purge.log", "w", encoding="utf-8") as log,
        open(write_end, "w", encoding="utf-8") as pipe,
    ):
        assert terminal_progress(log, enabled=True) is None
        assert terminal_progress(pipe, enabled=True) is None
        assert terminal_progress(io.StringIO(), enabled=True) is None
        assert terminal_progress(object(), enabled=True) is None
    os.close(read_end)


def test_the_bar_counts_rows_in_ascii(tty):
    stream, leader = tty
    bar = terminal_progress(stream, enabled=True)
    bar.start(300)
    bar.advance(100)
    bar.advance(200)
    assert bar.bar.n == 300
    bar.close()
    stream.flush()
    drawn = os.read(leader, 65536).decode("utf-8")
    assert "0/300" in drawn  # tqdm redraws at most every 0.1 s
    assert "rows" in drawn
    assert drawn.isascii()


def test_a_bar_never_started_ignores_advance_and_close():
    bar = BarProgress(io.StringIO())
    bar.advance(5)
    bar.close()
    assert bar.bar is None
    assert bar.stream.getvalue() == ""


def test_sigterm_stops_like_ctrl_c():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as raised, terminate_as_interrupt():
        # Raise only once the handler is ours: the default one would end pytest.
        assert signal.getsignal(signal.SIGTERM) is not previous
        signal.raise_signal(signal.SIGTERM)
    assert isinstance(raised.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_login_name_is_the_os_user(monkeypatch):
    monkeypatch.setenv("LOGNAME", "night-shift")
    assert login_name() == "night-shift"


def test_no_login_name_is_an_empty_one(monkeypatch):
    def unknown():
        raise OSError("No username set in the environment")

    monkeypatch.setattr(console.getpass, "getuser", unknown)
    assert login_name() == ""


@pytest.mark.parametrize("sig", SIGNALS)
def test_a_signal_before_the_purge_starts_is_130_and_one_line(sentinel_handlers, sig):
    command = SignalledBeforeThePurge()
    command.sig = sig

    assert run_command_object(command, "token_purge") == Result(
        130, "", "CommandError: Interrupted before the purge started: nothing was deleted.\n"
    )
    assert [signal.getsignal(s) for s in SIGNALS] == [sentinel_handler] * 2


@pytest.mark.django_db
@pytest.mark.parametrize("sig", SIGNALS)
def test_a_signal_after_the_output_says_nothing_was_lost(sentinel_handlers, sig):
    command = SignalledAfterTheOutput()
    command.sig = sig

    done = run_command_object(command, "token_report", "--check")
    assert (done.code, done.err) == (
        130,
        "CommandError: Interrupted after the output was written: nothing was lost.\n",
    )
    assert done.out.startswith("OK:"), done.out


def test_only_the_first_signal_interrupts_the_rest_wait_for_the_cleanup(sentinel_handlers):
    with pytest.raises(KeyboardInterrupt) as first, interrupts_raised():
        try:
            signal.raise_signal(signal.SIGINT)
        finally:
            # The cleanup (history row, the one line) runs on: later signals are ignored.
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
    assert type(first.value) is KeyboardInterrupt
    assert [signal.getsignal(s) for s in SIGNALS] == [sentinel_handler] * 2


def test_sigterm_is_terminated_and_an_inherited_ignore_is_kept(sentinel_handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with pytest.raises(Terminated), interrupts_raised():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is sentinel_handler


def test_interrupt_behind_finds_the_signal_a_driver_error_hides():
    interrupt = Terminated()
    try:
        try:
            raise interrupt
        except KeyboardInterrupt as exc:
            raise OperationalError("connection in transaction status ACTIVE") from exc
    except OperationalError as exc:
        assert interrupt_behind(exc) is interrupt
    assert interrupt_behind(OperationalError("disk I/O error")) is None
