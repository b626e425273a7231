"""TOKENOPS values are checked once, up front: one line naming the key, nothing written."""

import pytest

from tokenops.models import PurgeRun

pytestmark = pytest.mark.django_db(transaction=True)

COMMANDS = [
    ["token_report"],
    ["token_purge"],
    ["token_purge", "--dry-run"],
    ["token_schedule_hint", "--platform", "all"],
]
BAD = [
    ("BATCH_SECONDS", "x", "a number of seconds above 0 and at most 60, got 'x'."),
    ("BATCH_SECONDS", 0, "a number of seconds above 0 and at most 60, got 0."),
    ("BATCH_SECONDS", 61, "a number of seconds above 0 and at most 60, got 61."),
    ("BATCH_SIZE", "x", "a whole number from 1 to 10000000, got 'x'."),
    ("BATCH_SIZE", 0, "a whole number from 1 to 10000000, got 0."),
    ("BATCH_SIZE", 2.5, "a whole number from 1 to 10000000, got 2.5."),
    ("REPORT_TOP", "ten", "a whole number from 0 to 10000000, got 'ten'."),
    ("SLIDING_TOKENS", "no", "\"auto\", True or False, got 'no'."),
    ("SLIDING_TOKENS", 1, '"auto", True or False, got 1.'),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(("key", "value", "message"), BAD)
def test_bad_values_are_one_line_naming_the_key(manage, settings, command, key, value, message):
    settings.TOKENOPS = {key: value}
    result = manage(*command)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"CommandError: TOKENOPS['{key}'] must be {message}\n"
    assert not PurgeRun.objects.exists()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    "key", ["OLDER_THAN", "HISTORY_KEEP", "PURGE_WARN_AFTER", "RUNNING_TIMEOUT"]
)
def test_bad_durations_name_the_key(manage, settings, command, key):
    settings.TOKENOPS = {key: "a week"}
    result = manage(*command)
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"CommandError: TOKENOPS['{key}']: Invalid duration 'a week'")
    assert result.err.count("\n") == 1
    assert not PurgeRun.objects.exists()


def test_good_values_are_accepted(manage, settings):
    settings.TOKENOPS = {
        "OLDER_THAN": "1w2d",
        "BATCH_SIZE": 500,
        "BATCH_SECONDS": 1,
        "SLIDING_TOKENS": True,
        "REPORT_TOP": 0,
        "HISTORY_KEEP": None,
        "PURGE_WARN_AFTER": "30d",
        "RUNNING_TIMEOUT": "2h",
    }
    assert manage("token_purge").code == 0
    assert manage("token_report").code == 0
