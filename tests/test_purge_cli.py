"""token_purge as a real process: errors a scheduler log sees are one line, no traceback."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection

from tests.purge_support import run_manage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="own databases; runs once, in the sqlite run"
    ),
]


def tables(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT name FROM sqlite_master")]


def test_unmigrated_database(tmp_path):
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    code, out, err = run_manage(f"sqlite:///{path}", "token_purge")
    assert (code, out) == (1, "")
    assert err == (
        "CommandError: Table token_blacklist_outstandingtoken does not exist in database "
        "'default': run 'python manage.py migrate --database default'.\n"
    )
    assert tables(path) == []


def test_bad_batch_size_from_the_command_line(tmp_path):
    path = tmp_path / "app.sqlite3"
    assert run_manage(f"sqlite:///{path}", "migrate", "-v0")[0] == 0
    before = path.read_bytes()
    code, out, err = run_manage(f"sqlite:///{path}", "token_purge", "--batch-size", "0")
    assert (code, out) == (2, "")
    assert err == (
        "manage.py token_purge: error: argument --batch-size: expected a whole number from "
        "1 to 10000000, got '0'\n"
    )
    assert path.read_bytes() == before


def test_unreachable_server():
    code, out, err = run_manage("postgres://postgres@127.0.0.1:1/nowhere", "token_purge")
    assert (code, out) == (1, "")
    assert err.startswith("CommandError: Cannot reach database 'default': ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
