"""The "Token hygiene" admin page through Django's test client: permissions, CSRF, figures."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import dropped, expired_and_active, utcnow
from tokenops.admin import RECENT_RUNS
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


def test_page_shows_the_report_figures(viewer):
    expired_and_active()
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


def test_viewer_cannot_purge(viewer):
    expired_and_active()
    assert viewer.get(PURGE).status_code == 403
    assert viewer.post(PURGE, {"confirm": "yes"}).status_code == 403
    assert OutstandingToken.objects.count() == 9
    assert PurgeRun.objects.count() == 0


def test_viewer_can_dry_run(viewer):
    expired_and_active()
    response = viewer.post(PAGE, {"action": "dry_run"})
    assert response.status_code == 200
    assert response.context["dry_run_headline"] == (
        "Dry run: nothing was deleted. Would delete 5 outstanding tokens and 2 blacklisted "
        "tokens from database 'default'."
    )
    run = PurgeRun.objects.get()
    assert (run.dry_run, run.trigger, run.started_by) == (True, "admin", "ivan")
    assert OutstandingToken.objects.count() == 9


def test_purge_needs_confirmation_and_is_recorded(purger):
    expired_and_active()
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
    assert re.fullmatch(
        r"Deleted 5 outstanding tokens and 2 blacklisted tokens from database 'default' in "
        r"\d+\.\d\d s \(1 batch, longest transaction \d+\.\d\d s\)\.",
        message,
    ), message
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (4, 0)
    run = PurgeRun.objects.get()
    assert (run.dry_run, run.outcome, run.trigger, run.started_by) == (False, "ok", "admin", "olga")
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (5, 2)


SLIDING_JWT = {"AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.SlidingToken",)}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({}, "(set by TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m)."),
        (
            {"TOKENOPS": {"OLDER_THAN": "1d"}},
            "(set by TOKENOPS['OLDER_THAN']; TOKENOPS['OLDER_THAN'] 1d, LEEWAY 0m).",
        ),
        (
            {"TOKENOPS": {"OLDER_THAN": "1d"}, "SIMPLE_JWT": {"LEEWAY": 7200 * 24}},
            "(set by LEEWAY; TOKENOPS['OLDER_THAN'] 1d, LEEWAY 2d).",
        ),
        (
            {"SIMPLE_JWT": SLIDING_JWT},
            "(set by the sliding window; TOKENOPS['OLDER_THAN'] 0m, LEEWAY 0m, sliding window 1d).",
        ),
    ],
)
def test_cutoff_line_names_the_setting_that_set_it(purger, settings, named):
    """The admin page has no --older-than: the margin comes from the settings, and says so."""
    expired_and_active()
    with override_settings(**settings):
        page = html.unescape(purger.get(PAGE).content.decode())
        confirmation = html.unescape(purger.get(PURGE).content.decode())
    for text in (page, confirmation):
        [cutoff] = re.findall(r"<p(?: id=\"cutoff\")?>(Cutoff: .*?)</p>", text)
        assert cutoff.startswith("Cutoff: tokens that expired at or before ")
        assert cutoff.endswith(f" UTC are purgeable {named}")
        assert "--older-than" not in text


def test_purge_is_csrf_protected():
    expired_and_active()
    client = client_for(staff("olga", "view_token_hygiene", "run_purge"), enforce_csrf_checks=True)
    assert client.post(PURGE, {"confirm": "yes"}).status_code == 403
    assert client.post(PAGE, {"action": "dry_run"}).status_code == 403
    assert OutstandingToken.objects.count() == 9
    assert PurgeRun.objects.count() == 0


def test_failed_purge_is_an_error_message_and_a_history_row(purger):
    expired_and_active()
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
        # ... and still lists the history, the failed run first.
        assert [(r.outcome, r.shown_class) for r in response.context["runs"]] == [
            ("failed", "failed")
        ]
    run = PurgeRun.objects.get()
    assert (run.outcome, run.error) == ("failed", error)


def test_history_is_listed_read_only(viewer, purger):
    expired_and_active()
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


def test_stale_running_row_is_shown_interrupted(viewer):
    long_ago = to_db(utcnow() - timedelta(hours=3))
    PurgeRun.objects.create(
        started_at=long_ago, heartbeat_at=long_ago, trigger="task", database="default"
    )
    page = viewer.get(PAGE).content.decode()
    assert '<td class="outcome outcome-interrupted">interrupted</td>' in page


def history_rows(page: str) -> list[list[str]]:
    """The cells of each row of the page's purge history table, tags stripped."""
    rows = re.findall(r'<tr class="run">(.*?)</tr>', page, re.DOTALL)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td.*?</td>", row, re.DOTALL)
        ]
        for row in rows
    ]


def test_page_lists_the_purge_history_newest_first(viewer, purger):
    page = viewer.get(PAGE).content.decode()
    assert 'id="no-runs"' in page
    assert history_rows(page) == []
    expired_and_active()
    purger.post(PURGE, {"confirm": "yes"})
    viewer.post(PAGE, {"action": "dry_run"})
    response = viewer.get(PAGE)
    page = response.content.decode()
    assert 'id="no-runs"' not in page
    real, dry = PurgeRun.objects.order_by("pk")
    assert [run.pk for run in response.context["runs"]] == [dry.pk, real.pk]
    # outcome, dry run, way, who, outstanding and blacklisted deleted (a dry run: would be)
    assert [cells[1:] for cells in history_rows(page)] == [
        ["ok", "yes", "admin", "ivan", "(0)", "(0)", ""],
        ["ok", "no", "admin", "olga", "5", "2", ""],
    ]
    assert history_rows(page)[1][0] == f"{real.started_at:%Y-%m-%d %H:%M:%S}"
    assert '<a href="/admin/tokenops/purgerun/">All purge runs</a>' in page


def test_page_lists_only_the_most_recent_runs(viewer):
    start = utcnow() - timedelta(days=1)
    PurgeRun.objects.bulk_create(
        PurgeRun(
            started_at=to_db(start + timedelta(minutes=i)),
            heartbeat_at=to_db(start + timedelta(minutes=i)),
            trigger="command",
            database="default",
            outcome="ok" if i else "failed",
            outstanding_deleted=i,
        )
        for i in range(RECENT_RUNS + 5)
    )
    response = viewer.get(PAGE)
    shown = [run.outstanding_deleted for run in response.context["runs"]]
    assert shown == list(range(RECENT_RUNS + 4, 4, -1))
    assert len(history_rows(response.content.decode())) == RECENT_RUNS == 20


def test_page_draws_the_expiry_chart(viewer):
    expired_and_active()
    page = viewer.get(PAGE).content.decode()
    [chart] = re.findall(r'<svg class="chart" id="expiry-chart".*?</svg>', page, re.DOTALL)
    bars = re.findall(r'<rect class="bar (expired|active)"[^>]*data-tokens="(\d+)"', chart)
    expired = [("expired", "0"), ("expired", "0"), ("expired", "5"), ("expired", "0")]
    active = [("active", "4"), ("active", "0"), ("active", "0"), ("active", "0")]
    assert bars == expired + active
    assert re.findall(r'<rect class="blacklisted"[^>]*data-tokens="(\d+)"', chart) == ["2"]
    assert "<title>expired " in chart
    assert ": 5</title>" in chart
    assert ": 4</title>" in chart


def test_dry_run_result_is_shown_on_the_page_with_its_history_row(viewer):
    expired_and_active()
    assert 'id="dry-run-result"' not in viewer.get(PAGE).content.decode()
    response = viewer.post(PAGE, {"action": "dry_run"})
    page = response.content.decode()
    [result] = re.findall(r'<div id="dry-run-result">(.*?)</div>', page, re.DOTALL)
    assert result.strip() == (
        "<p><strong>Dry run: nothing was deleted. Would delete 5 outstanding tokens and "
        "2 blacklisted tokens from database &#x27;default&#x27;.</strong></p>"
    )
    assert response.context["dry_run"].before.outstanding.purgeable == 5
    run = PurgeRun.objects.get()
    assert [r.pk for r in response.context["runs"]] == [run.pk]
    assert history_rows(page)[0][1:6] == ["ok", "yes", "admin", "ivan", "(5)"]
    assert OutstandingToken.objects.count() == 9


def test_other_actions_posted_to_the_page_only_show_it_again(viewer):
    expired_and_active()
    response = viewer.post(PAGE, {"action": "purge"})
    assert (response.status_code, response["Location"]) == (302, PAGE)
    assert PurgeRun.objects.count() == 0
    assert OutstandingToken.objects.count() == 9


def test_run_list_shows_the_real_outcome(viewer):
    long_ago = to_db(utcnow() - timedelta(hours=3))
    PurgeRun.objects.create(
        started_at=long_ago, heartbeat_at=long_ago, trigger="task", database="default"
    )
    changelist = viewer.get("/admin/tokenops/purgerun/").content.decode()
    assert '<td class="field-outcome_shown">interrupted</td>' in changelist
    with override_settings(TOKENOPS={"RUNNING_TIMEOUT": "4h"}):
        changelist = viewer.get("/admin/tokenops/purgerun/").content.decode()
    assert '<td class="field-outcome_shown">running</td>' in changelist
    with override_settings(TOKENOPS={"RUNNING_TIMEOUT": "soon"}):
        changelist = viewer.get("/admin/tokenops/purgerun/").content.decode()
    assert '<td class="field-outcome_shown">running</td>' in changelist  # raw, not a crash


def test_page_and_purge_work_without_use_tz(settings):
    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Moscow"
    expired_and_active()
    client = client_for(staff("olga", "view_token_hygiene", "run_purge"))
    assert client.post(PURGE, {"confirm": "yes"}).status_code in (200, 302)
    response = client.get(PAGE)
    assert response.status_code == 200
    run = PurgeRun.objects.get()
    assert (run.outcome, run.trigger, run.outstanding_deleted) == ("ok", "admin", 5)
