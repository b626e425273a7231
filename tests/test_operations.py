"""The orchestrator: run_purge and build_report, with every default taken from TOKENOPS."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework_simplejwt import settings as jwt_settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, SlidingToken, Token

from tests.simplejwt_compat import outstand
from tests.utils import (
    make_tokens,
    orphan_blacklist_rows,
    recorded_run,
    snapshot,
    stored,
    utcnow,
)
from tokenops.cutoff import FROM_OPTION, FROM_SETTING, OLDER_THAN, SLIDING
from tokenops.models import PurgeRun
from tokenops.operations import (
    PurgeRequest,
    ReportRequest,
    build_report,
    check_health,
    run_purge,
)
from tokenops.purging import BatchStats, Deleted

SLIDING_CLASS = "rest_framework_simplejwt.tokens.SlidingToken"
HOUR = 3600
DAY = 86400


# Property: run_purge keeps exactly the non-purgeable rows and never un-blacklists a token
# that simplejwt would still accept, for random populations, --older-than, LEEWAY, USE_TZ
# and sliding tokens.
#
# Tokens are real simplejwt tokens written by simplejwt itself (``outstand``/``blacklist``;
# before simplejwt 5.5, which has no ``outstand``, by a copy of 5.5's: tests/simplejwt_compat.py).
# Acceptance is judged by simplejwt's own ``check_exp`` with a TokenBackend carrying the
# LEEWAY under test (``Token.check_exp`` asks ``get_token_backend().get_leeway()``, and the
# shared backend in ``simplejwt.state`` is built once, at import), and by ``check_blacklist``.


@dataclass(frozen=True)
class Spec:
    sliding: bool
    exp_offset: int  # seconds from now of the first expiry (the one the row stores)
    blacklisted: bool
    refresh_share: float | None  # sliding only: when it was last refreshed, or never


def specs(anchors: list[int]) -> st.SearchStrategy[Spec]:
    """Expiries anywhere, and many close to where some setting puts the cutoff."""
    near_anchor = st.builds(
        lambda anchor, delta: -anchor + delta,
        st.sampled_from(anchors),
        st.one_of(
            st.sampled_from([-HOUR, -60, -1, 0, 1, 60, HOUR]), st.integers(-2 * HOUR, 2 * HOUR)
        ),
    )
    return st.builds(
        Spec,
        sliding=st.booleans(),
        exp_offset=st.one_of(near_anchor, st.integers(-4 * DAY, DAY)),
        blacklisted=st.booleans(),
        refresh_share=st.one_of(st.none(), st.just(1.0), st.floats(0, 1)),
    )


def accepted(token: Token, now: datetime) -> bool:
    try:
        token.check_exp(current_time=now)
    except TokenError:
        return False
    return True


def blacklisted_now(token: Token) -> bool:
    try:
        token.check_blacklist()
    except TokenError:
        return True
    return False


def as_stored(moment: datetime) -> datetime:
    """simplejwt compares naive UTC when USE_TZ is False."""
    return moment if django_settings.USE_TZ else moment.replace(tzinfo=None)


def make_token(spec: Spec, now: datetime, backend: TokenBackend, leeway: int) -> Token:
    """A real token with the chosen expiry, recorded in the tables by simplejwt itself."""
    first_exp = now + timedelta(seconds=spec.exp_offset)
    if not spec.sliding:
        token: Token = RefreshToken()
        token._token_backend = backend
        token.set_exp(from_time=first_exp, lifetime=timedelta(0))
        outstand(token)
        if spec.blacklisted:
            token.blacklist()
        return token
    api = jwt_settings.api_settings
    issued = first_exp - api.SLIDING_TOKEN_LIFETIME
    token = SlidingToken()
    token._token_backend = backend
    token.set_iat(at_time=issued)
    token.set_exp(from_time=issued, lifetime=api.SLIDING_TOKEN_LIFETIME)
    token.set_exp(
        api.SLIDING_TOKEN_REFRESH_EXP_CLAIM,
        from_time=issued,
        lifetime=api.SLIDING_TOKEN_REFRESH_LIFETIME,
    )
    outstand(token)  # the row keeps this first expiry for ever
    if spec.refresh_share is not None:
        # The last refresh, at a moment simplejwt allows (refresh_exp + LEEWAY) and not
        # in the future; same jti, later exp: what TokenRefreshSlidingSerializer does.
        refresh_exp = datetime.fromtimestamp(token[api.SLIDING_TOKEN_REFRESH_EXP_CLAIM], tz=UTC)
        # simplejwt refuses at refresh_exp + LEEWAY exactly: one second before is the last.
        latest = min(now, refresh_exp + timedelta(seconds=leeway - 1))
        moment = issued + (latest - issued) * spec.refresh_share
        if moment > issued:
            token.check_exp(api.SLIDING_TOKEN_REFRESH_EXP_CLAIM, current_time=as_stored(moment))
            token.set_exp(from_time=moment, lifetime=api.SLIDING_TOKEN_LIFETIME)
            token.set_iat(at_time=moment)
    if spec.blacklisted:
        token.blacklist()
    return token


@pytest.mark.django_db
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    older_than_minutes=st.one_of(
        st.sampled_from([0, 10, 60, 24 * 60, 3 * 24 * 60]), st.integers(0, 3 * 24 * 60)
    ),
    time_zone=st.sampled_from(["UTC", "Europe/Moscow", "America/New_York"]),
    leeway=st.one_of(st.sampled_from([0, 30, 300, HOUR, 6 * HOUR]), st.integers(1, 6 * HOUR)),
    use_tz=st.booleans(),
    sliding_in_use=st.booleans(),
    batch_size=st.sampled_from([None, 5, 1000]),
)
def test_survivors_are_exactly_the_rows_no_setting_can_accept(
    data, older_than_minutes, time_zone, leeway, use_tz, sliding_in_use, batch_size
):
    BlacklistedToken.objects.all().delete()
    OutstandingToken.objects.all().delete()
    window = int(jwt_settings.api_settings.SLIDING_TOKEN_REFRESH_LIFETIME.total_seconds())
    anchors = [0, older_than_minutes * 60, leeway, window + 2 * leeway]
    population = data.draw(st.lists(specs(anchors), min_size=1, max_size=20), label="population")
    classes = ("rest_framework_simplejwt.tokens.AccessToken",)
    if sliding_in_use:
        classes += (SLIDING_CLASS,)
    else:
        population = [spec for spec in population if not spec.sliding]
    older_than = timedelta(minutes=older_than_minutes)
    jwt = {"LEEWAY": leeway, "AUTH_TOKEN_CLASSES": classes}
    with override_settings(USE_TZ=use_tz, TIME_ZONE=time_zone, SIMPLE_JWT=jwt):
        api = jwt_settings.api_settings
        backend = TokenBackend(api.ALGORITHM, api.SIGNING_KEY, leeway=leeway)
        now = datetime.now(UTC)
        tokens = [make_token(spec, now, backend, leeway) for spec in population]
        first_exp = {
            token["jti"]: OutstandingToken.objects.get(jti=token["jti"]).expires_at
            for token in tokens
        }

        result = run_purge(PurgeRequest(older_than=older_than, batch_size=batch_size))

        purge_now = result.cutoff.now
        margins = [older_than, timedelta(seconds=leeway)]
        if sliding_in_use:
            margins.append(api.SLIDING_TOKEN_REFRESH_LIFETIME + 2 * timedelta(seconds=leeway))
        cutoff = as_stored(purge_now - max(margins))
        expected = {jti for jti, expires in first_exp.items() if expires > cutoff}
        survivors = set(OutstandingToken.objects.values_list("jti", flat=True))
        assert survivors == expected
        assert result.deleted.outstanding == len(tokens) - len(expected)
        assert orphan_blacklist_rows() == 0

        check_time = as_stored(purge_now)
        for spec, token in zip(population, tokens, strict=True):
            if token["jti"] in survivors:
                assert blacklisted_now(token) is spec.blacklisted
            if spec.blacklisted and accepted(token, check_time):
                # simplejwt still takes it by expiry: the blacklist row must stop it.
                assert blacklisted_now(token), (spec, token.payload, result.cutoff)


# A faithful superset of simplejwt's flushexpiredtokens: with LEEWAY 0 and no sliding
# tokens, ``token_purge --older-than 0d`` leaves exactly the rows ``flushexpiredtokens``
# leaves, on the same data seeded twice.


def seed(rows: list[tuple[str, datetime, int | None, bool]]) -> None:
    OutstandingToken.objects.bulk_create(
        OutstandingToken(
            jti=jti,
            token=f"header.{jti}.signature",
            user_id=user_id,
            created_at=stored(expires - timedelta(days=7)),
            expires_at=stored(expires),
        )
        for jti, expires, user_id, _black in rows
    )
    by_jti = dict(OutstandingToken.objects.values_list("jti", "pk"))
    BlacklistedToken.objects.bulk_create(
        BlacklistedToken(token_id=by_jti[jti]) for jti, _e, _u, black in rows if black
    )


def state() -> tuple[set[str], set[str]]:
    return (
        set(OutstandingToken.objects.values_list("jti", flat=True)),
        set(BlacklistedToken.objects.values_list("token__jti", flat=True)),
    )


def wipe() -> None:
    BlacklistedToken.objects.all().delete()
    OutstandingToken.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_same_survivors_as_flushexpiredtokens(manage):
    users = [get_user_model().objects.create(username=f"u{i}").pk for i in range(3)]
    rng = random.Random(3)
    now = datetime.now(UTC)
    rows = []
    for index in range(400):
        # Nothing within two minutes of now: the two commands run a moment apart.
        minutes = rng.choice([-1, 1]) * rng.randint(2, 60 * 24 * 30)
        rows.append(
            (
                f"jti-{index:04d}",
                now + timedelta(minutes=minutes),
                rng.choice([*users, None]),
                rng.random() < 0.4,
            )
        )

    seed(rows)
    flushed = manage("flushexpiredtokens")
    assert flushed.code == 0, flushed.err
    after_flush = state()

    wipe()
    seed(rows)
    assert state() != after_flush  # the reseed really restored the deleted rows
    purged = manage("token_purge", "--older-than", "0d", "--format", "json")
    assert purged.code == 0, purged.err
    assert '"cutoff_reason": "older-than"' in purged.out
    assert state() == after_flush
    expired = {jti for jti, expires, _u, _b in rows if expires <= now}
    assert after_flush[0] == {jti for jti, *_ in rows} - expired


# run_purge: what the caller leaves out comes from TOKENOPS.


class ProgressLog:
    """A Progress that writes down every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def start(self, total: int) -> None:
        self.calls.append(("start", total))

    def advance(self, rows: int) -> None:
        self.calls.append(("advance", rows))

    def close(self) -> None:
        self.calls.append(("close", None))


def now_minus(*days: float) -> list[datetime]:
    """Expiries that many days ago (a negative number: in the future)."""
    now = utcnow()
    return [now - timedelta(days=d) for d in days]


def jtis() -> set[str]:
    return set(OutstandingToken.objects.values_list("jti", flat=True))


@pytest.mark.django_db
@override_settings(TOKENOPS={"OLDER_THAN": "3d"})
def test_older_than_none_takes_tokenops_older_than():
    kept = make_tokens(now_minus(2, 1, -1), blacklisted=[True, False, True])
    make_tokens(now_minus(4, 5), blacklisted=[True, False])
    result = run_purge(PurgeRequest())
    assert result.cutoff.older_than == timedelta(days=3)
    assert result.cutoff.reason == OLDER_THAN
    assert result.cutoff.older_than_source == FROM_SETTING
    assert result.deleted == Deleted(outstanding=2, blacklisted=1)
    assert jtis() == {token.jti for token in kept}
    assert PurgeRun.objects.get().older_than == timedelta(days=3)


@pytest.mark.django_db
@override_settings(TOKENOPS={"OLDER_THAN": "3d"})
def test_an_explicit_older_than_of_zero_beats_the_setting():
    live = make_tokens(now_minus(-1))
    make_tokens(now_minus(2, 4))
    result = run_purge(PurgeRequest(older_than=timedelta(0)))
    assert result.cutoff.older_than == timedelta(0)
    assert result.cutoff.older_than_source == FROM_OPTION
    assert result.deleted.outstanding == 2
    assert jtis() == {live[0].jti}


@pytest.mark.django_db
@override_settings(TOKENOPS={"BATCH_SIZE": 3})
def test_batch_size_none_takes_tokenops_batch_size():
    make_tokens(now_minus(*[1] * 10) + now_minus(-1))
    progress = ProgressLog()
    result = run_purge(PurgeRequest(), progress=progress)
    assert result.stats.batches == 4
    assert [rows for call, rows in progress.calls if call == "advance"] == [3, 3, 3, 1]
    assert PurgeRun.objects.get().batch_size == 3

    make_tokens(now_minus(*[1] * 10))
    result = run_purge(PurgeRequest(batch_size=5))
    assert result.stats.batches == 2
    assert PurgeRun.objects.latest("pk").batch_size == 5


@pytest.mark.django_db
@pytest.mark.parametrize(("configured", "classes"), [(True, ()), (False, (SLIDING_CLASS,))])
def test_sliding_tokens_setting_is_passed_to_the_cutoff(configured, classes):
    # "auto" would decide the other way from AUTH_TOKEN_CLASSES each time: the setting wins.
    jwt = {**django_settings.SIMPLE_JWT, "AUTH_TOKEN_CLASSES": classes}
    with override_settings(SIMPLE_JWT=jwt, TOKENOPS={"SLIDING_TOKENS": configured}):
        result = run_purge(PurgeRequest(dry_run=True))
    assert (result.cutoff.sliding_window is not None) is configured
    assert (result.cutoff.reason == SLIDING) is configured


@pytest.mark.django_db
def test_dry_run_counts_and_writes_no_token_row():
    make_tokens(now_minus(3, 2, -1), blacklisted=[True, False, True])
    before = snapshot()
    progress = ProgressLog()
    result = run_purge(PurgeRequest(dry_run=True), progress=progress)
    assert snapshot() == before
    assert result.dry_run is True
    assert result.stats == BatchStats()
    assert result.deleted == Deleted()
    assert result.after == result.before
    assert (result.before.outstanding.purgeable, result.before.blacklisted.purgeable) == (2, 1)
    assert progress.calls == []  # nothing is deleted, so nothing is drawn
    assert PurgeRun.objects.get().dry_run is True


@pytest.mark.django_db
def test_progress_is_started_with_the_purgeable_total_advanced_and_closed():
    make_tokens(now_minus(*[1] * 23) + now_minus(-1, -2), blacklisted=True)
    progress = ProgressLog()
    result = run_purge(PurgeRequest(batch_size=10), progress=progress)
    assert progress.calls == [
        ("start", 23),
        ("advance", 10),
        ("advance", 10),
        ("advance", 3),
        ("close", None),
    ]
    assert result.before.outstanding.purgeable == 23
    assert result.deleted == Deleted(outstanding=23, blacklisted=23)
    assert (result.after.outstanding.total, result.after.blacklisted.total) == (2, 2)


class Broken(Exception):
    pass


class FailingProgress(ProgressLog):
    def advance(self, rows: int) -> None:
        super().advance(rows)
        raise Broken("the terminal went away")


@pytest.mark.django_db
def test_progress_is_closed_and_the_run_recorded_when_the_purge_fails():
    make_tokens(now_minus(*[1] * 5))
    progress = FailingProgress()
    with pytest.raises(Broken):
        run_purge(PurgeRequest(batch_size=2), progress=progress)
    assert progress.calls == [("start", 5), ("advance", 2), ("close", None)]
    # The first batch was committed before the failure: the tables say where it stopped.
    assert OutstandingToken.objects.count() == 3
    run = PurgeRun.objects.get()
    assert (run.outcome, run.error) == (PurgeRun.Outcome.FAILED, "the terminal went away")
    assert run.outstanding_deleted == 2


# build_report


@pytest.mark.django_db(transaction=True, databases=["default", "secondary"])
def test_report_runs_no_per_row_query(report_population, django_assert_max_num_queries):
    # Counting: 3 queries in one snapshot (BEGIN, SET TRANSACTION on the servers, COMMIT);
    # the history: 2 reads in their own transaction (2 more); top users: 2; the
    # connection's set-up: 1. Never a query per row.
    with django_assert_max_num_queries(13):
        build_report(ReportRequest("default", older_than=timedelta(0), top=10))


@pytest.mark.django_db
@override_settings(TOKENOPS={"OLDER_THAN": "5d", "REPORT_TOP": 1})
def test_report_takes_older_than_and_top_from_tokenops(report_population):
    report = build_report(ReportRequest())
    assert report.cutoff.older_than == timedelta(days=5)
    assert report.cutoff.older_than_source == FROM_SETTING
    asked = build_report(ReportRequest(older_than=timedelta(days=5)))
    assert (asked.cutoff.older_than, asked.cutoff.older_than_source) == (
        timedelta(days=5),
        FROM_OPTION,
    )
    assert (report.counts.outstanding.total, report.counts.outstanding.purgeable) == (7, 2)
    assert [(user.username, user.tokens) for user in report.top_users] == [("alice", 4)]
    assert report.runs == ()
    assert PurgeRun.objects.count() == 0  # a report writes nothing


@pytest.mark.django_db(transaction=True)
def test_report_asks_whether_a_purge_is_overdue_with_one_probe_at_most():
    """The counts answer "anything purgeable?": only a never-purged database with
    purgeable rows needs --check's probe (did one expire before PURGE_WARN_AFTER?)."""
    now = utcnow()

    def overdue_and_probes() -> tuple[bool, int]:
        with CaptureQueriesContext(connection) as queries:
            report = build_report(ReportRequest(top=0))
        probes = [
            q["sql"]
            for q in queries
            if "token_blacklist_outstandingtoken" in q["sql"] and "LIMIT 1" in q["sql"].upper()
        ]
        assert report.history is not None
        assert report.history.overdue == check_health(ReportRequest()).overdue
        return report.history.overdue, len(probes)

    make_tokens([now + timedelta(days=1)], user=None)
    assert overdue_and_probes() == (False, 0)  # never purged, nothing purgeable
    make_tokens([now - timedelta(days=20)], user=None)
    assert overdue_and_probes() == (True, 1)  # never purged, one expired 20 days ago
    recorded_run(ago=timedelta(days=20))
    assert overdue_and_probes() == (True, 0)  # a stale success, rows purgeable
    recorded_run(ago=timedelta(hours=1))
    assert overdue_and_probes() == (False, 0)  # a recent success
