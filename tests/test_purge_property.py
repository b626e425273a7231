"""Property: run_purge keeps exactly the non-purgeable rows and never un-blacklists a token
that simplejwt would still accept, for random populations, --older-than, LEEWAY, USE_TZ and
sliding tokens.

Tokens are real simplejwt tokens written by simplejwt itself (``outstand``/``blacklist``).
Acceptance is judged by simplejwt's own ``check_exp`` with a TokenBackend carrying the
LEEWAY under test (``Token.check_exp`` asks ``get_token_backend().get_leeway()``, and the
shared backend in ``simplejwt.state`` is built once, at import), and by ``check_blacklist``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework_simplejwt import settings as jwt_settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, SlidingToken, Token

from tests.purge_support import orphan_blacklist_rows
from tokenops.purging import run_purge

pytestmark = pytest.mark.django_db

SLIDING_CLASS = "rest_framework_simplejwt.tokens.SlidingToken"
HOUR = 3600
DAY = 86400


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
        token.outstand()
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
    token.outstand()  # the row keeps this first expiry for ever
    if spec.refresh_share is not None:
        # The last refresh, at a moment simplejwt allows (refresh_exp + LEEWAY) and not
        # in the future; same jti, later exp: what TokenRefreshSlidingSerializer does.
        refresh_exp = datetime.fromtimestamp(
            token[api.SLIDING_TOKEN_REFRESH_EXP_CLAIM], tz=timezone.utc
        )
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
        now = datetime.now(timezone.utc)
        tokens = [make_token(spec, now, backend, leeway) for spec in population]
        first_exp = {
            token["jti"]: OutstandingToken.objects.get(jti=token["jti"]).expires_at
            for token in tokens
        }

        result = run_purge("default", older_than, dry_run=False, batch_size=batch_size)

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
