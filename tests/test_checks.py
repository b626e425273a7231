"""Readiness checks on real databases, and the tokenops.E001 system check."""

from textwrap import dedent

import pytest
from django.conf import settings
from django.core import checks
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from tests.utils import ROOT, project_env, run_manage, sqlite_url
from tokenops.checks import (
    BLACKLIST_APP,
    check_blacklist_app,
    ensure_alias,
    ensure_database,
    ensure_ready,
    pending_migrations,
)
from tokenops.errors import TokenopsError

MISSING_APP = (
    "'rest_framework_simplejwt.token_blacklist' is not in INSTALLED_APPS: tokenops works on "
    "simplejwt's token blacklist tables; add the app and run 'python manage.py migrate'."
)
UNKNOWN = "Unknown database alias 'nope' (configured: default, secondary)."


def without_blacklist_app():
    return override_settings(
        INSTALLED_APPS=[app for app in settings.INSTALLED_APPS if app != BLACKLIST_APP]
    )


@pytest.mark.django_db(databases=["default", "secondary"])
@pytest.mark.parametrize("using", ["default", "secondary"])
def test_a_migrated_database_is_ready(using):
    assert ensure_ready(using) is None
    assert ensure_database(using) is None


@pytest.mark.parametrize("check", [ensure_alias, ensure_database, ensure_ready])
def test_an_unknown_alias_is_named_with_the_known_ones(check):
    with pytest.raises(TokenopsError) as raised:
        check("nope")
    assert str(raised.value) == UNKNOWN
    assert "nope" not in connections


@pytest.mark.django_db(databases=["secondary"])
def test_a_missing_table_says_which_migrate_to_run():
    # SQLite (the secondary database) drops tables inside the test's transaction.
    with connections["secondary"].cursor() as cursor:
        cursor.execute("DROP TABLE token_blacklist_blacklistedtoken")
    with pytest.raises(TokenopsError) as raised:
        ensure_ready("secondary")
    assert str(raised.value) == (
        "Table token_blacklist_blacklistedtoken does not exist in database 'secondary': "
        "run 'python manage.py migrate --database secondary'."
    )


def test_ready_needs_the_blacklist_app():
    with without_blacklist_app(), pytest.raises(TokenopsError) as raised:
        ensure_ready("default")
    assert str(raised.value) == MISSING_APP


def run_check(code, database_url):
    """Run ``code`` in ``manage.py shell`` of the example project on ``database_url``."""
    done = run_manage("shell", "-v", "0", "-c", dedent(code), env=project_env(database_url))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout.strip()


REPORT_ERROR = """
    from tokenops.checks import {name}
    from tokenops.errors import TokenopsError
    try:
        print({name}("default"))
    except TokenopsError as exc:
        print("TokenopsError:", exc)
"""


@pytest.mark.slow
def test_a_missing_sqlite_file_is_not_created(tmp_path):
    missing = tmp_path / "typo.sqlite3"
    out = run_check(REPORT_ERROR.format(name="ensure_database"), sqlite_url(missing))
    assert out == (
        f"TokenopsError: Database file {missing} of 'default' does not exist: check "
        "DATABASES, or run 'python manage.py migrate' to create it."
    )
    assert not missing.exists()


@pytest.mark.slow
def test_an_empty_sqlite_file_misses_the_first_table(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    out = run_check(REPORT_ERROR.format(name="ensure_ready"), sqlite_url(empty))
    assert out == (
        "TokenopsError: Table token_blacklist_outstandingtoken does not exist in database "
        "'default': run 'python manage.py migrate --database default'."
    )
    assert empty.stat().st_size == 0


@pytest.mark.django_db
def test_a_migrated_database_has_no_pending_migrations():
    assert pending_migrations("default") == []
    assert pending_migrations("default", "tokenops") == []


def our_migrations() -> list[str]:
    """Every migration file of tokenops, as pending_migrations labels them."""
    names = (ROOT / "tokenops" / "migrations").glob("0*.py")
    return sorted(f"tokenops.{path.stem}" for path in names)


@pytest.mark.django_db
def test_pending_migrations_are_listed_by_label():
    # Forget, inside the test's transaction, that tokenops was migrated.
    MigrationRecorder(connections["default"]).migration_qs.filter(app="tokenops").delete()
    ours = our_migrations()
    assert ours[:2] == ["tokenops.0001_initial", "tokenops.0002_skipped_outcome_and_complete"]
    assert pending_migrations("default", "tokenops") == ours
    assert pending_migrations("default") == ours
    assert pending_migrations("default", "token_blacklist") == []


@pytest.mark.slow
def test_pending_migrations_of_an_empty_database(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    code = """
        from tokenops.checks import pending_migrations
        print(pending_migrations("default", "tokenops"))
        print(len(pending_migrations("default")) > 1)
    """
    assert run_check(code, sqlite_url(empty)).splitlines() == [str(our_migrations()), "True"]


@pytest.mark.slow
def test_pending_migrations_of_an_unreachable_database():
    out = run_check(
        REPORT_ERROR.format(name="pending_migrations"), "postgres://nobody@127.0.0.1:9/nowhere"
    )
    assert out.startswith("TokenopsError: Cannot reach database 'default': ")
    assert "\n" not in out


def test_system_check_is_silent_with_the_blacklist_app():
    assert check_blacklist_app() == []
    assert [m for m in checks.run_checks() if m.id == "tokenops.E001"] == []


def test_system_check_reports_a_missing_blacklist_app():
    with without_blacklist_app():
        found = [m for m in checks.run_checks() if m.id == "tokenops.E001"]
        direct = check_blacklist_app()
    assert direct == [checks.Error(MISSING_APP, id="tokenops.E001")]
    assert found == direct
    assert found[0].is_serious()


@pytest.mark.slow
def test_the_check_command_reports_the_missing_app(migrated_sqlite):
    done = run_manage(
        "check",
        env=project_env(
            sqlite_url(migrated_sqlite), settings_module="tests.settings_without_blacklist"
        ),
    )
    assert done.returncode == 1
    assert "(tokenops.E001) 'rest_framework_simplejwt.token_blacklist' is not in" in done.stderr
