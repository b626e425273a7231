"""The process around a command: console encodings, the progress bar, SIGTERM, the login name.

Redirected output on Windows uses the console code page: it must degrade, never crash.
"""

import io
import json
import os
import signal
import sys

import pytest

from tests.utils import project_env, run_manage, sqlite_url
from tokenops import console
from tokenops.console import (
    BarProgress,
    Terminated,
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
