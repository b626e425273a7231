"""The "Token hygiene" admin page through Django's test client: permissions, CSRF, figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.conftest import utcnow
from tests.test_history import dropped, expired_and_active
from tokenops.dbtime import to_db
from tokenops.models import PurgeRun

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/admin/tokenops/tokenhygiene/"
PURGE = "/admin/tokenops/tokenhygiene/purge/"


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def client_for(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def purger() -> Client:
    return client_for(staff("olga", "view_token_hygiene", "run_purge"))


@pytest.fixture
def viewer() -> Client:
    return client_for(staff("ivan", "view_token_hygiene"))


def test_anonymous_is_sent_to_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={PAGE}"


def test_staff_without_permission_sees_neither_link_nor_page():
    client = client_for(staff("petr"))
    assert PAGE.encode() not in client.get("/admin/").content
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"action": "dry_run"}).status_code == 403
    assert PurgeRun.objects.count() == 0


def test_index_links_to_the_page(viewer):
    content = viewer.get("/admin/").content.decode()
    assert f'<a href="{PAGE}">Token hygiene</a>' in content


def test_page_shows_the_report_figures(viewer, make_tokens):
    expired_and_active(make_tokens)
    response = viewer.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    rows = response.context["rows"]
    assert [(r["counts"].total, r["counts"].purgeable) for r in rows] == [(9, 5), (2, 2)]
    assert '<td class="num">9</td>' in page
    assert "Last successful purge: none recorded." in page
    assert 'id="expiry-chart"' in page
    bars = response.context["chart"].bars
    assert [bar.tokens for bar in bars] == [0, 0, 5, 0, 4, 0, 0, 0]
    assert [bar.blacklisted for bar in bars] == [0, 0, 2, 0, 0, 0, 0, 0]
    assert 'id="purge-now"' not in page


def test_viewer_cannot_purge(viewer, make_tokens):
    expired_and_active(make_tokens)
    assert viewer.get(PURGE).status_code == 403
    assert viewer.post(PURGE, {"confirm": "yes"}).status_code == 403
    assert OutstandingToken.objects.count() == 9
    assert PurgeRun.objects.count() == 0


def test_viewer_can_dry_run(viewer, make_tokens):
    expired_and_active(make_tokens)
    response = viewer.post(PAGE, {"action": "dry_run"})
    assert response.status_code == 200
    assert response.context["dry_run_headline"] == (
        "Dry run: nothing was deleted. Would delete 5 outstanding and 2 blacklisted tokens "
        "from database 'default'."
    )
    run = PurgeRun.objects.get()
    assert (run.dry_run, run.trigger, run.started_by) == (True, "admin", "ivan")
    assert OutstandingToken.objects.count() == 9


def test_purge_needs_confirmation_and_is_recorded(purger, make_tokens):
    expired_and_active(make_tokens)
    confirmation = purger.get(PURGE)
    assert confirmation.status_code == 200
    assert (
        "Are you sure you want to purge tokens? 5 outstanding tokens (of which 2 blacklisted) "
        "will be deleted from database “default”."
    ) in confirmation.content.decode()
    assert OutstandingToken.objects.count() == 9
    unconfirmed = purger.post(PURGE, {})
    assert unconfirmed.status_code == 200
    assert OutstandingToken.objects.count() == 9
    response = purger.post(PURGE, {"confirm": "yes"}, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith(
        "Deleted 5 outstanding and 2 blacklisted tokens from database 'default' in "
    )
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (4, 0)
    run = PurgeRun.objects.get()
    assert (run.dry_run, run.outcome, run.trigger, run.started_by) == (False, "ok", "admin", "olga")
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (5, 2)


def test_purge_is_csrf_protected(make_tokens):
    expired_and_active(make_tokens)
    client = client_for(staff("olga", "view_token_hygiene", "run_purge"), enforce_csrf_checks=True)
    assert client.post(PURGE, {"confirm": "yes"}).status_code == 403
    assert client.post(PAGE, {"action": "dry_run"}).status_code == 403
    assert OutstandingToken.objects.count() == 9
    assert PurgeRun.objects.count() == 0


def test_failed_purge_is_an_error_message_and_a_history_row(purger, make_tokens):
    expired_and_active(make_tokens)
    with dropped(BlacklistedToken):
        response = purger.post(PURGE, {"confirm": "yes"}, follow=True)
        table = BlacklistedToken._meta.db_table
        error = (
            f"Table {table} does not exist in database 'default': "
            "run 'python manage.py migrate --database default'."
        )
        assert [str(m) for m in response.context["messages"]] == [error]
        assert response.context["error"] == error  # the page itself explains, too
        assert response.status_code == 200
    run = PurgeRun.objects.get()
    assert (run.outcome, run.error) == ("failed", error)


def test_history_is_listed_read_only(viewer, purger, make_tokens):
    expired_and_active(make_tokens)
    purger.post(PURGE, {"confirm": "yes"})
    run = PurgeRun.objects.get()
    changelist = viewer.get("/admin/tokenops/purgerun/")
    assert changelist.status_code == 200
    assert "olga" in changelist.content.decode()
    assert viewer.get("/admin/tokenops/purgerun/add/").status_code == 403
    detail = viewer.get(f"/admin/tokenops/purgerun/{run.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert viewer.post(f"/admin/tokenops/purgerun/{run.pk}/delete/").status_code == 403
    assert PurgeRun.objects.count() == 1


def test_stale_running_row_is_shown_interrupted(viewer, make_tokens):
    long_ago = to_db(utcnow() - timedelta(hours=3))
    PurgeRun.objects.create(
        started_at=long_ago, heartbeat_at=long_ago, trigger="task", database="default"
    )
    page = viewer.get(PAGE).content.decode()
    assert '<td class="outcome outcome-interrupted">interrupted</td>' in page


def test_page_and_purge_work_without_use_tz(settings, make_tokens):
    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Moscow"
    expired_and_active(make_tokens)
    client = client_for(staff("olga", "view_token_hygiene", "run_purge"))
    assert client.post(PURGE, {"confirm": "yes"}).status_code in (200, 302)
    response = client.get(PAGE)
    assert response.status_code == 200
    run = PurgeRun.objects.get()
    assert (run.outcome, run.trigger, run.outstanding_deleted) == ("ok", "admin", 5)
