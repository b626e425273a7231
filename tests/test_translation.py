"""Russian: tokenops speaks it under LANGUAGE_CODE = "ru", and the shipped catalog is complete
and up to date."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.utils import translation

from tests.utils import PYTHON, ROOT, expired_and_active

LOCALE = ROOT / "tokenops" / "locale" / "ru" / "LC_MESSAGES"
MAKEMESSAGES = ["makemessages", "-l", "ru", "--no-location", "--no-obsolete"]

russian = override_settings(LANGUAGE_CODE="ru")


@pytest.fixture(autouse=True)
def language_restored():
    """Commands and LocaleMiddleware activate a language for the thread; later tests
    (in English) must not inherit Russian."""
    with translation.override(translation.get_language()):
        yield


@pytest.mark.django_db(transaction=True)
@russian
def test_report_in_russian(manage):
    expired_and_active()
    result = manage("token_report", "--top", "0")
    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert lines[0].startswith("Отчёт о токенах в базе данных 'default' на ")  # noqa: RUF001
    assert lines[1].startswith("Граница: можно удалить токены, истёкшие не позже ")
    assert lines[3].split() == ["токены", "всего", "действующие", "истёкшие", "к", "удалению"]
    assert lines[5].split() == ["выданные", "9", "4", "5", "5"]
    assert lines[6].split() == ["в", "чёрном", "списке", "2", "0", "2", "2"]
    assert lines[8] == "Истёкшие токены по времени с момента истечения"  # noqa: RUF001
    assert lines[-1] == "Последняя успешная очистка: записей нет."


@pytest.mark.django_db(transaction=True)
@russian
def test_purge_in_russian(manage):
    expired_and_active()
    result = manage("token_purge", "--dry-run")
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines()[0] == (
        "Пробный запуск: ничего не удалено. Из базы данных 'default' было бы удалено "
        "токенов: выданных — 5, в чёрном списке — 2."
    )


@pytest.mark.django_db(transaction=True)
@russian
def test_errors_in_russian(manage):
    result = manage("token_purge", "--database", "nope")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        "CommandError: Неизвестный псевдоним базы данных 'nope' (настроены: default, secondary).\n"
    )
    result = manage("token_report", "--older-than", "5x")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "manage.py token_report: error: argument --older-than: Недопустимая длительность "
        "'5x': укажите целое число и единицу (m — минуты, h — часы, d — дни, w — недели), "
        "например 30m, 12h, 7d, 2w или 1w2d.\n"
    )


@pytest.mark.django_db(transaction=True)
def test_english_stays_english(manage):
    result = manage("token_purge", "--database", "nope")
    assert result.err == (
        "CommandError: Unknown database alias 'nope' (configured: default, secondary).\n"
    )


@pytest.mark.django_db(transaction=True)
def test_admin_page_in_russian():
    expired_and_active()
    user = User.objects.create_user("olga", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="view_token_hygiene"))
    client = Client(HTTP_ACCEPT_LANGUAGE="ru")
    client.force_login(user)
    page = client.get("/admin/tokenops/tokenhygiene/").content.decode()
    assert "<h1>Гигиена токенов</h1>" in page
    assert "Токены в базе данных «default»" in page
    assert 'value="Пробный запуск"' in page
    assert "Последняя успешная очистка: записей нет." in page


def msgfmt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["msgfmt", *args], capture_output=True, text=True, check=False)


def test_every_message_has_a_russian_translation():
    checked = msgfmt("--check", "--statistics", "-o", os.devnull, str(LOCALE / "django.po"))
    assert checked.returncode == 0, checked.stderr
    assert re.fullmatch(r"\d+ translated messages\.\n", checked.stderr), checked.stderr
    catalog = (LOCALE / "django.po").read_text(encoding="utf-8")
    assert "#, fuzzy" not in catalog


def test_shipped_mo_is_compiled_from_the_po(tmp_path):
    compiled = tmp_path / "django.mo"
    assert msgfmt("--check-format", "-o", str(compiled), str(LOCALE / "django.po")).returncode == 0
    assert compiled.read_bytes() == (LOCALE / "django.mo").read_bytes()


def without_header_date(text: str) -> str:
    return re.sub(r'"POT-Creation-Date: .*\\n"\n', "", text)


@pytest.mark.slow
def test_po_is_up_to_date_with_the_code(tmp_path):
    """makemessages on a copy of the package changes nothing but the header's date."""
    copy = tmp_path / "tokenops"
    shutil.copytree(ROOT / "tokenops", copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [PYTHON, "-m", "django", *MAKEMESSAGES],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    shipped = (LOCALE / "django.po").read_text(encoding="utf-8")
    fresh = (copy / "locale" / "ru" / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8")
    assert without_header_date(fresh) == without_header_date(shipped)
