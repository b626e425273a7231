"""Russian: tokenops speaks it under LANGUAGE_CODE = "ru", and the shipped catalog is complete
and up to date."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.utils import translation

from tests.utils import PYTHON, ROOT, expired_and_active, make_tokens, utcnow
from tokenops.dbtime import to_db
from tokenops.models import PurgeRun

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
    assert lines[1].endswith(
        " UTC (её задаёт TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m)."
    )
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
        "Пробный запуск: ничего не удалено. Из базы данных 'default' было бы удалено: "
        "5 выданных токенов и 2 токена в чёрном списке."
    )
    assert re.fullmatch(
        r"Граница: можно удалить токены, истёкшие не позже [-\d]+ [:\d]+ UTC "
        r"\(её задаёт --older-than; --older-than 1d, LEEWAY 0m\)\.",
        manage("token_purge", "--dry-run", "--older-than", "1d").out.splitlines()[1],
    )


# Each count in the forms Russian gives it: 1 (and 21), 2-4 (and 22-24), 5-20 (and 25-30).
FORMS = {
    1: {
        "outstanding": "1 выданный токен",
        "blacklisted": "1 токен в чёрном списке",
        "batches": "1 пакет",
        "days": "1 день",
        "purgeable": "1 токен можно удалить",
        "users": "1 пользователь",
        "question": "будет удалён 1 выданный токен",
    },
    2: {
        "outstanding": "2 выданных токена",
        "blacklisted": "2 токена в чёрном списке",
        "batches": "2 пакета",
        "days": "2 дня",
        "purgeable": "2 токена можно удалить",
        "users": "2 пользователя",
        "question": "будут удалены 2 выданных токена",
    },
    5: {
        "outstanding": "5 выданных токенов",
        "blacklisted": "5 токенов в чёрном списке",
        "batches": "5 пакетов",
        "days": "5 дней",
        "purgeable": "5 токенов можно удалить",
        "users": "5 пользователей",
        "question": "будут удалены 5 выданных токенов",
    },
    21: {
        "outstanding": "21 выданный токен",
        "blacklisted": "21 токен в чёрном списке",
        "batches": "21 пакет",
        "days": "21 день",
        "purgeable": "21 токен можно удалить",
        "users": "21 пользователь",
        "question": "будет удалён 21 выданный токен",
    },
}


@pytest.mark.django_db(transaction=True)
@russian
@pytest.mark.parametrize("n", FORMS)
def test_counts_take_the_russian_plural_form(manage, n):
    """n tokens of n users, all blacklisted and purgeable; the last purge was n days ago."""
    forms = FORMS[n]
    expired = utcnow() - timedelta(days=1)
    for index in range(n):
        make_tokens([expired], blacklisted=True, user=f"user{index}")
    long_ago = to_db(utcnow() - timedelta(days=n, hours=1))
    PurgeRun.objects.create(
        started_at=long_ago,
        finished_at=long_ago,
        heartbeat_at=long_ago,
        trigger="command",
        database="default",
        outcome=PurgeRun.Outcome.OK,
        outstanding_deleted=n,
        blacklisted_deleted=n,
    )

    with override_settings(TOKENOPS={"PURGE_WARN_AFTER": "1h"}):
        report = manage("token_report", "--top", str(n))
    assert report.code == 0, report.err
    assert report.err == (
        f"Внимание: успешной очистки не было уже {forms['days']}, "
        f"а {forms['purgeable']}. "  # noqa: RUF001
        "Работает ли ещё очистка по расписанию?\n"
    )
    lines = report.out.splitlines()
    assert f"{forms['users']} с наибольшим числом выданных токенов" in lines  # noqa: RUF001
    assert lines[-1].endswith(
        f" UTC (команда), удалено: {forms['outstanding']} и {forms['blacklisted']}."
    )

    user = User.objects.create_user("olga", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_token_hygiene", "run_purge"])
    )
    client = Client(HTTP_ACCEPT_LANGUAGE="ru")
    client.force_login(user)
    question = client.get("/admin/tokenops/tokenhygiene/purge/").content.decode()
    assert f"{forms['question']} (из них в чёрном списке: {n})." in question

    dry_run = manage("token_purge", "--dry-run")
    assert (dry_run.code, dry_run.err) == (0, "")
    assert dry_run.out.splitlines()[0] == (
        "Пробный запуск: ничего не удалено. Из базы данных 'default' было бы удалено: "
        f"{forms['outstanding']} и {forms['blacklisted']}."
    )

    purge = manage("token_purge", "--batch-size", "1")
    assert (purge.code, purge.err) == (0, "")
    assert re.fullmatch(
        rf"Из базы данных 'default' удалено: {forms['outstanding']} и {forms['blacklisted']}, "
        rf"за \d+\.\d\d с \({forms['batches']}, "  # noqa: RUF001
        r"самая долгая транзакция \d+\.\d\d с\)\.",  # noqa: RUF001
        purge.out.splitlines()[0],
    ), purge.out


@pytest.mark.django_db(transaction=True)
@russian
def test_errors_in_russian(manage):
    result = manage("token_purge", "--database", "nope")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "manage.py token_purge: error: argument --database: Неизвестный псевдоним базы данных "
        "'nope' (настроены: default, secondary).\n"
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
        "manage.py token_purge: error: argument --database: Unknown database alias 'nope' "
        "(configured: default, secondary).\n"
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
    assert (
        " UTC. Её задаёт настройка TOKENOPS[&#x27;OLDER_THAN&#x27;] "
        "(TOKENOPS[&#x27;OLDER_THAN&#x27;] = 0m; SIMPLE_JWT[&#x27;LEEWAY&#x27;] = 0m).</p>"
    ) in page


def msgfmt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["msgfmt", *args], capture_output=True, text=True, check=False)


def test_plural_forms_are_the_standard_russian_three():
    catalog = (LOCALE / "django.po").read_text(encoding="utf-8")
    assert (
        '"Plural-Forms: nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && "\n'
        '"n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);\\n"\n'
    ) in catalog
    assert "msgstr[3]" not in catalog


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
