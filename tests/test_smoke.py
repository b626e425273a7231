from datetime import timedelta

import pytest

from tests.conftest import utcnow

pytestmark = pytest.mark.django_db(transaction=True)


def test_report_json_counts(manage, make_tokens):
    make_tokens([utcnow() - timedelta(days=2)], blacklisted=True)
    make_tokens([utcnow() + timedelta(days=2)])
    result = manage("token_report", "--format", "json")
    assert result.code == 0, result.err
    assert '"purgeable": 1' in result.out
