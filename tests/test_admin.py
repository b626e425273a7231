"""The "Token hygiene" admin page through Django's test client: permissions, CSRF, figures."""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core import signing
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.utils import (
    dropped,
    expired_and_active,
    finished_admin_purge,
    make_tokens,
    utcnow,
    wait_until,
)
from tokenops.admin import (
    CONFIRMATION_MAX_AGE,
    CUTOFF_SALT,
    RECENT_RUNS,
    confirmed_cutoff,
    sign_cutoff,
    use_celery,
)
from tokenops.dbtime import as_utc, to_db
from tokenops.history import DRY_RUNS_KEPT
from tokenops.models import PurgeRun, SweepTally
from tokenops.sweeping import hour_of

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


def test_page_says_whether_in_app_sweeps_are_on_and_what_they_removed(viewer, settings):
    expired_and_active()
    assert '<p id="sweeps">In-app sweeps are off.</p>' in viewer.get(PAGE).content.decode()
    settings.TOKENOPS = {**settings.TOKENOPS, "SWEEP_PROBABILITY": 0.25}
    SweepTally.objects.create(
        hour=hour_of(datetime.now(UTC)), outstanding_deleted=1248, blacklisted_deleted=7, sweeps=3
    )
    page = viewer.get(PAGE).content.decode()
    assert (
        '<p id="sweeps">In-app sweeps removed 1248 tokens in the last 24 h '
        "(probability 0.25, at most 100 rows a sweep).</p>"
    ) in page


def test_viewer_cannot_purge(viewer):
    expired_and_active()
    assert viewer.get(PURGE).status_code == 403
    signed = sign_cutoff("default", utcnow())
    assert viewer.post(PURGE, {"confirm": "yes", "cutoff": signed}).status_code == 403
    assert OutstandingToken.objects.count() == 9
    assert PurgeRun.objects.count() == 0


def test_viewer_can_dry_run(viewer):
    expired_and_active()
    response = viewer.post(PAGE, {"action": "dry_run"}, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    assert messages_of(response) == [
        "Dry run: nothing was deleted. Would delete 5 outstanding tokens and 2 blacklisted "
        "tokens from database 'default'."
    ]
    run = PurgeRun.objects.get()
    assert (run.dry_run, run.trigger, run.started_by) == (True, "admin", "ivan")
    assert OutstandingToken.objects.count() == 9


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def confirm(client: Client) -> tuple[str, str]:
    """The confirmation page's signed cutoff and the cutoff line it shows."""
    page = client.get(PURGE).content.decode()
    [signed] = re.findall(r'name="cutoff" value="([^"]+)"', page)
    [line] = re.findall(r'<p id="cutoff">(.*?)</p>', page)
    return signed, html.unescape(line)


def shown_moment(line: str) -> datetime:
    [moment] = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", line)
    return datetime.strptime(moment, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)


def test_purge_needs_confirmation_runs_outside_the_request_and_is_recorded(purger, purge_in_thread):
    expired_and_active()
    confirmation = purger.get(PURGE)
    assert confirmation.status_code == 200
    assert (
        "Are you sure you want to purge tokens? 5 outstanding tokens (of which 2 blacklisted) "
        "will be deleted from database “default”."
    ) in confirmation.content.decode()
    signed, line = confirm(purger)
    assert OutstandingToken.objects.count() == 9
    unconfirmed = purger.post(PURGE, {"cutoff": signed})
    assert unconfirmed.status_code == 200
    assert PurgeRun.objects.count() == 0
    response = purger.post(PURGE, {"confirm": "yes", "cutoff": signed})
    assert (response.status_code, response["Location"]) == (302, PAGE)
    run = finished_admin_purge()
    assert (run.dry_run, run.outcome, run.trigger, run.started_by) == (False, "ok", "admin", "olga")
    assert (run.outstanding_deleted, run.blacklisted_deleted) == (5, 2)
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (4, 0)
    # The page tells the outcome once, with the cutoff the confirmation page showed.
    page = purger.get(PAGE)
    [message] = messages_of(page)
    assert re.fullmatch(
        r"Deleted 5 outstanding tokens and 2 blacklisted tokens from database “default” in "
        r"0:00:0\d, with the cutoff you confirmed: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.",
        message,
    ), message
    assert shown_moment(message) == shown_moment(line) == as_utc(run.cutoff).replace(microsecond=0)
    assert messages_of(purger.get(PAGE)) == []
    assert page.context["refresh"] is None


def test_the_confirmed_cutoff_is_the_one_used(purger, purge_in_thread):
    """A token that expires after the shown cutoff, but before the click, is kept."""
    expired_and_active()
    signed, _line = confirm(purger)
    cutoff = confirmed_cutoff("default", signed)
    assert cutoff is not None
    [late] = make_tokens([cutoff + timedelta(milliseconds=5)], user="late")
    wait_until(lambda: utcnow() > cutoff + timedelta(milliseconds=50), timeout=1, what="expiry")
    purger.post(PURGE, {"confirm": "yes", "cutoff": signed})
    run = finished_admin_purge()
    assert as_utc(run.cutoff) == cutoff
    assert run.outstanding_deleted == 5
    assert OutstandingToken.objects.filter(pk=late.pk).exists()


def test_a_cutoff_later_than_the_safe_one_is_not_used(purger, purge_in_thread):
    """Even a validly signed cutoff in the future never deletes a token still accepted."""
    expired_and_active()
    clicked = utcnow()
    future = sign_cutoff("default", clicked + timedelta(days=2))
    purger.post(PURGE, {"confirm": "yes", "cutoff": future})
    run = finished_admin_purge()
    assert clicked <= as_utc(run.cutoff) <= as_utc(run.finished_at)
    assert run.outstanding_deleted == 5
    assert OutstandingToken.objects.count() == 4


@pytest.mark.parametrize("cutoff", ["", "x", "2020-01-01T00:00:00+00:00"])
def test_an_altered_confirmation_starts_nothing(purger, purge_in_thread, cutoff):
    expired_and_active()
    response = purger.post(PURGE, {"confirm": "yes", "cutoff": cutoff}, follow=True)
    assert messages_of(response) == [
        "The confirmation has expired or was altered: nothing was started."
    ]
    assert PurgeRun.objects.count() == 0
    assert OutstandingToken.objects.count() == 9


def test_an_old_confirmation_starts_nothing(purger, purge_in_thread):
    """A confirmation page left open past CONFIRMATION_MAX_AGE showed figures long gone."""

    class Earlier(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time() - CONFIRMATION_MAX_AGE.total_seconds()) - 5)

    expired_and_active()
    payload = {"database": "default", "cutoff": utcnow().isoformat()}
    old = Earlier(salt=CUTOFF_SALT).sign_object(payload, serializer=signing.JSONSerializer)
    assert confirmed_cutoff("default", old) is None
    response = purger.post(PURGE, {"confirm": "yes", "cutoff": old}, follow=True)
    assert messages_of(response) == [
        "The confirmation has expired or was altered: nothing was started."
    ]
    assert PurgeRun.objects.count() == 0
    assert OutstandingToken.objects.count() == 9


def running_row(**fields) -> PurgeRun:
    """A real purge's history row as it stands while it runs: alive, some rows deleted."""
    now = to_db(utcnow())
    values = {
        "started_at": to_db(utcnow() - timedelta(seconds=75)),
        "heartbeat_at": now,
        "trigger": "command",
        "started_by": "svc-backup",
        "database": "default",
        "outstanding_purgeable": 1000,
        "outstanding_deleted": 400,
        "blacklisted_deleted": 30,
        **fields,
    }
    return PurgeRun.objects.create(**values)


def test_a_running_purge_shows_its_progress_and_blocks_a_second_one(purger, purge_in_thread):
    expired_and_active()
    signed, _line = confirm(purger)
    running = running_row()
    page = purger.get(PAGE)
    text = html.unescape(page.content.decode())
    assert page.context["refresh"] == 2
    assert '<meta http-equiv="refresh" content="2;url=/admin/tokenops/tokenhygiene/">' in text
    assert re.search(
        r"A purge is running since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(Command: svc-backup\)\.",
        text,
    )
    assert "400 of 1000 outstanding tokens deleted so far (30 blacklisted), 0:01:1" in text
    assert 'id="purge-now"' not in text
    assert 'id="purge-busy"' in text
    assert 'id="purge-running"' in purger.get(PURGE).content.decode()
    response = purger.post(PURGE, {"confirm": "yes", "cutoff": signed}, follow=True)
    [message] = messages_of(response)
    assert message.startswith("A purge is already running on database “default” since ")
    assert message.endswith(" (Command: svc-backup): nothing else was started.")
    assert list(PurgeRun.objects.values_list("pk", flat=True)) == [running.pk]
    assert OutstandingToken.objects.count() == 9


def test_runs_list_started_by_outcome_duration_and_dry_run_mark(viewer):
    start = utcnow() - timedelta(hours=2)
    for minutes, trigger, who, dry_run in [
        (0, "command", "svc-backup", False),
        (1, "task", "", False),
        (2, "admin", "olga", False),
        (3, "admin", "ivan", True),
    ]:
        PurgeRun.objects.create(
            started_at=to_db(start + timedelta(minutes=minutes)),
            finished_at=to_db(start + timedelta(minutes=minutes, seconds=83)),
            heartbeat_at=to_db(start + timedelta(minutes=minutes, seconds=83)),
            trigger=trigger,
            started_by=who,
            dry_run=dry_run,
            database="default",
            outcome="ok",
            outstanding_purgeable=7,
            blacklisted_purgeable=1,
            outstanding_deleted=0 if dry_run else 7,
            blacklisted_deleted=0 if dry_run else 1,
        )
    page = viewer.get(PAGE).content.decode()
    assert [cells[1:] for cells in history_rows(page)] == [
        ["ok dry run", "Admin page: ivan", "(7)", "(1)", "0:01:23"],
        ["ok", "Admin page: olga", "7", "1", "0:01:23"],
        ["ok", "Celery task", "7", "1", "0:01:23"],
        ["ok", "Command: svc-backup", "7", "1", "0:01:23"],
    ]
    assert "✗" not in page


def test_every_moment_has_seconds_and_utc(viewer, purger, purge_in_thread):
    expired_and_active()
    signed, _line = confirm(purger)
    purger.post(PURGE, {"confirm": "yes", "cutoff": signed})
    finished_admin_purge()
    page = html.unescape(viewer.get(PAGE).content.decode())
    moment = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    for part in ("generated", "cutoff", "last-purge"):
        [text] = re.findall(rf'<p id="{part}">(.*?)</p>', page, re.DOTALL)
        assert re.search(moment, text), (part, text)
    assert re.search(r"\(Admin page: olga\), 5 outstanding tokens", page)
    [started] = [cells[0] for cells in history_rows(page)]
    assert re.fullmatch(moment, started)


def test_dry_runs_are_pruned_and_real_purges_stay(viewer, purger, purge_in_thread):
    expired_and_active()
    signed, _line = confirm(purger)
    purger.post(PURGE, {"confirm": "yes", "cutoff": signed})
    real = finished_admin_purge()
    for _ in range(DRY_RUNS_KEPT + 3):
        viewer.post(PAGE, {"action": "dry_run"})
    dry = PurgeRun.objects.filter(dry_run=True)
    assert dry.count() == DRY_RUNS_KEPT
    assert PurgeRun.objects.filter(dry_run=False).get() == real
    runs = viewer.get(PAGE).context["runs"]
    assert real.pk in [run.pk for run in runs]


def test_confirmation_page_computes_only_what_it_shows(purger):
    expired_and_active()
    with CaptureQueriesContext(connection) as queries:
        assert purger.get(PURGE).status_code == 200
    sql = " ".join(query["sql"] for query in queries.captured_queries).lower()
    assert "token_blacklist_outstandingtoken" in sql
    assert not re.search(r"group by\s+\S*user_id", sql)  # the top users, never shown here


@pytest.mark.parametrize(
    ("mode", "broker", "celery"),
    [
        ("auto", "redis://127.0.0.1:6379/0", True),
        ("auto", "", False),
        ("thread", "redis://127.0.0.1:6379/0", False),
        ("celery", "", True),
    ],
)
def test_admin_purge_setting_picks_celery_or_a_thread(settings, mode, broker, celery):
    settings.CELERY_BROKER_URL = broker
    assert use_celery(mode) is celery


SLIDING_JWT = {"AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.SlidingToken",)}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (
            {},
            " The setting TOKENOPS['OLDER_THAN'] sets it "
            "(TOKENOPS['OLDER_THAN'] = 0m; SIMPLE_JWT['LEEWAY'] = 0m).",
        ),
        (
            {"TOKENOPS": {"OLDER_THAN": "1d"}},
            " The setting TOKENOPS['OLDER_THAN'] sets it "
            "(TOKENOPS['OLDER_THAN'] = 1d; SIMPLE_JWT['LEEWAY'] = 0m).",
        ),
        (
            {"TOKENOPS": {"OLDER_THAN": "1d"}, "SIMPLE_JWT": {"LEEWAY": 7200 * 24}},
            " The setting SIMPLE_JWT['LEEWAY'] sets it "
            "(TOKENOPS['OLDER_THAN'] = 1d; SIMPLE_JWT['LEEWAY'] = 2d).",
        ),
        (
            {"SIMPLE_JWT": SLIDING_JWT},
            " Sliding tokens set it: SIMPLE_JWT['SLIDING_TOKEN_REFRESH_LIFETIME'] plus twice "
            "the leeway (TOKENOPS['OLDER_THAN'] = 0m; SIMPLE_JWT['LEEWAY'] = 0m; "
            "sliding window = 1d).",
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
        [cutoff] = re.findall(r'<p id="cutoff">(Cutoff: .*?)</p>', text)
        assert cutoff.startswith("Cutoff: tokens that expired at or before ")
        assert cutoff.endswith(f" UTC are purgeable.{named}")
        assert "--older-than" not in text


def test_purge_is_csrf_protected():
    expired_and_active()
    client = client_for(staff("olga", "view_token_hygiene", "run_purge"), enforce_csrf_checks=True)
    signed = sign_cutoff("default", utcnow())
    assert client.post(PURGE, {"confirm": "yes", "cutoff": signed}).status_code == 403
    assert client.post(PAGE, {"action": "dry_run"}).status_code == 403
    assert OutstandingToken.objects.count() == 9
    assert PurgeRun.objects.count() == 0


def test_failed_purge_is_an_error_message_and_a_history_row(purger, purge_in_thread):
    expired_and_active()
    signed, _line = confirm(purger)
    with dropped(BlacklistedToken):
        purger.post(PURGE, {"confirm": "yes", "cutoff": signed})
        run = finished_admin_purge()
        response = purger.get(PAGE)
        table = BlacklistedToken._meta.db_table
        error = (
            f"Table {table} does not exist in database 'default': "
            "run 'python manage.py migrate --database default'."
        )
        [message] = messages_of(response)
        assert message.startswith("The purge started at ")
        assert message.endswith(f" ended failed: {error}")
        assert response.context["error"] == error  # the page itself explains, too
        assert response.status_code == 200
        # ... and still lists the history, the failed run first.
        assert [(r.outcome, r.shown_class) for r in response.context["runs"]] == [
            ("failed", "failed")
        ]
    assert (run.outcome, run.error) == ("failed", error)


def test_history_is_listed_read_only(viewer, purger, purge_in_thread):
    expired_and_active()
    signed, _line = confirm(purger)
    purger.post(PURGE, {"confirm": "yes", "cutoff": signed})
    run = finished_admin_purge()
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
    rows = re.findall(r'<tr class="run[^"]*">(.*?)</tr>', page, re.DOTALL)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td.*?</td>", row, re.DOTALL)
        ]
        for row in rows
    ]


def test_page_lists_the_purge_history_newest_first(viewer, purger, purge_in_thread):
    page = viewer.get(PAGE).content.decode()
    assert 'id="no-runs"' in page
    assert history_rows(page) == []
    expired_and_active()
    signed, _line = confirm(purger)
    purger.post(PURGE, {"confirm": "yes", "cutoff": signed})
    finished_admin_purge()
    viewer.post(PAGE, {"action": "dry_run"})
    response = viewer.get(PAGE)
    page = response.content.decode()
    assert 'id="no-runs"' not in page
    real, dry = PurgeRun.objects.order_by("pk")
    assert [run.pk for run in response.context["runs"]] == [dry.pk, real.pk]
    # outcome, who, outstanding and blacklisted deleted (a dry run: would be), duration
    rows = history_rows(page)
    assert [cells[1:5] for cells in rows] == [
        ["ok dry run", "Admin page: ivan", "(0)", "(0)"],
        ["ok", "Admin page: olga", "5", "2"],
    ]
    assert rows[1][0] == f"{as_utc(real.started_at):%Y-%m-%d %H:%M:%S} UTC"
    assert re.fullmatch(r"0:00:0\d", rows[1][5])
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


def test_dry_run_result_is_a_message_at_the_top_with_its_history_row(viewer):
    expired_and_active()
    response = viewer.post(PAGE, {"action": "dry_run"}, follow=True)
    page = html.unescape(response.content.decode())
    [messages] = re.findall(r'<ul class="messagelist">(.*?)</ul>', page, re.DOTALL)
    assert re.sub(r"<[^>]+>", "", messages).strip() == (
        "Dry run: nothing was deleted. Would delete 5 outstanding tokens and "
        "2 blacklisted tokens from database 'default'."
    )
    assert page.index('class="messagelist"') < page.index('id="figures"')
    run = PurgeRun.objects.get()
    assert [r.pk for r in response.context["runs"]] == [run.pk]
    assert history_rows(page)[0][1:4] == ["ok dry run", "Admin page: ivan", "(5)"]
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


def test_page_and_purge_work_without_use_tz(settings, purge_in_thread):
    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Moscow"
    expired_and_active()
    client = client_for(staff("olga", "view_token_hygiene", "run_purge"))
    signed, line = confirm(client)
    assert client.post(PURGE, {"confirm": "yes", "cutoff": signed}).status_code == 302
    run = finished_admin_purge()
    response = client.get(PAGE)
    assert response.status_code == 200
    assert (run.outcome, run.trigger, run.outstanding_deleted) == ("ok", "admin", 5)
    [message] = messages_of(response)
    assert shown_moment(message) == shown_moment(line) == as_utc(run.cutoff).replace(microsecond=0)
