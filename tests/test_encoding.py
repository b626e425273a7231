"""Redirected output on Windows uses the console code page: it must degrade, never crash."""

import json

import pytest

from tests.conftest import run_manage, sqlite_url

pytestmark = pytest.mark.slow
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
    done = run_manage("shell", "-c", code, env={"DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    return url


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_report_table_degrades_unencodable_names(database, encoding):
    done = run_manage("token_report", env={"DATABASE_URL": database, "PYTHONIOENCODING": encoding})
    assert (done.returncode, done.stderr) == (0, b"")
    text = done.stdout.decode(encoding)
    expected = NAME.encode(encoding, "replace").decode(encoding)
    assert any(line.startswith(expected) and line.endswith(" 3") for line in text.splitlines()), (
        text
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_json_stays_exact_on_any_code_page(database, encoding):
    done = run_manage(
        "token_report",
        "--format",
        "json",
        env={"DATABASE_URL": database, "PYTHONIOENCODING": encoding},
    )
    assert done.returncode == 0
    assert json.loads(done.stdout.decode(encoding))["top_users"][0]["username"] == NAME


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_errors_with_unencodable_input_are_still_one_line(database, encoding):
    done = run_manage(
        "token_purge",
        "--older-than",
        "7д😀",
        env={"DATABASE_URL": database, "PYTHONIOENCODING": encoding},
    )
    assert done.returncode == 2
    err = done.stderr.decode(encoding)
    assert err.startswith("manage.py token_purge: error: argument --older-than: Invalid duration")
    assert err.count("\n") == 1
