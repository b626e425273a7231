"""PostgreSQL with psycopg 3 ``server_side_binding``: more than 65,535 expired tokens.

flushexpiredtokens fails there (Django deletes the blacklist rows in one statement that
lists every expired id; the protocol allows 65,535 parameters) and deletes nothing;
token_purge deletes by primary-key range and succeeds.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from tests.conftest import utcnow
from tests.purge_support import bulk_tokens, database_url, run_manage

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a psycopg 3 option"),
]

EXPIRED = 66_000
LIVE = 500


@pytest.mark.django_db(transaction=True)
def test_token_purge_succeeds_where_flushexpiredtokens_fails():
    now = utcnow()
    bulk_tokens(
        [now - timedelta(days=1 + i % 30) for i in range(EXPIRED)],
        blacklisted=[i % 3 == 0 for i in range(EXPIRED)],
    )
    bulk_tokens([now + timedelta(days=1)] * LIVE, blacklisted=[True] * 100 + [False] * 400)
    url = database_url()
    settings_module = "tests.settings_server_binding"

    code, out, err = run_manage(url, "flushexpiredtokens", settings_module=settings_module)
    assert code != 0
    assert "number of parameters must be between 0 and 65535" in err
    assert OutstandingToken.objects.count() == EXPIRED + LIVE  # nothing deleted

    code, out, err = run_manage(
        url, "token_purge", "--format", "json", settings_module=settings_module
    )
    assert (code, err) == (0, ""), err
    data = json.loads(out)
    assert data["deleted"] == {"outstanding": EXPIRED, "blacklisted": EXPIRED // 3}
    assert data["after"] == {"outstanding": LIVE, "blacklisted": 100}
    assert OutstandingToken.objects.count() == LIVE
    assert BlacklistedToken.objects.count() == 100
