"""token_purge is a faithful superset of simplejwt's flushexpiredtokens.

With LEEWAY 0 and no sliding tokens, ``token_purge --older-than 0d`` must leave exactly
the rows ``flushexpiredtokens`` leaves, on the same data seeded twice.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.conftest import stored

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_same_survivors_as_flushexpiredtokens(manage):
    users = [get_user_model().objects.create(username=f"u{i}").pk for i in range(3)]
    rng = random.Random(3)
    now = datetime.now(timezone.utc)
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
