"""TOKENOPS values are checked once, up front: one line naming the key, nothing written."""

from datetime import timedelta

import pytest

from tokenops.app_settings import DEFAULTS, MAX_ROWS, TokenopsSettings, get_settings
from tokenops.errors import TokenopsError
from tokenops.models import PurgeRun

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
    ("BATCH_SIZE", 10**12, "a whole number from 1 to 10000000, got 1000000000000."),
    ("OLDER_THAN", 7, "a duration string such as '7d', got 7."),
    (
        "HISTORY_KEEP",
        timedelta(days=1),
        "a duration string such as '7d', got datetime.timedelta(days=1).",
    ),
    ("MAX_SECONDS", "x" * 10_000, f"None or a number of seconds above 0, got '{'x' * 40}'...."),
]
DURATIONS = ["OLDER_THAN", "HISTORY_KEEP", "PURGE_WARN_AFTER", "RUNNING_TIMEOUT"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(("key", "value", "message"), BAD)
def test_bad_values_are_one_line_naming_the_key(manage, settings, command, key, value, message):
    settings.TOKENOPS = {key: value}
    result = manage(*command)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"CommandError: TOKENOPS['{key}'] must be {message}\n"
    assert not PurgeRun.objects.exists()


SHAPE = "TOKENOPS must be a dict of settings such as {'OLDER_THAN': '7d'}, got "


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (["OLDER_THAN"], "['OLDER_THAN']"),
        (5, "5"),
        ("OLDER_THAN", "'OLDER_THAN'"),
        (("OLDER_THAN", "7d"), "('OLDER_THAN', '7d')"),
        ([], "[]"),
        ("x" * 10_000, f"'{'x' * 40}'..."),
    ],
)
def test_a_tokenops_that_is_not_a_dict_is_one_line(manage, settings, command, value, shown):
    settings.TOKENOPS = value
    result = manage(*command)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"CommandError: {SHAPE}{shown}.\n"
    assert not PurgeRun.objects.exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("OLDER_THAN", "7d7d", "TOKENOPS['OLDER_THAN']: Invalid duration '7d7d': give each"),
        pytest.param(
            "BATCH_SIZE",
            10**5000,
            "TOKENOPS['BATCH_SIZE'] must be a whole number from 1 to 10000000, got <int>.",
            id="BATCH_SIZE-5000-digits",
        ),
        pytest.param(
            "MAX_SECONDS",
            10**400,
            "TOKENOPS['MAX_SECONDS'] must be None or a number of seconds "
            "above 0, got 1000000000000000000000000000000000000000...",
            id="MAX_SECONDS-beyond-float",
        ),
        (
            "PURGE_WARN_AFTER",
            "7" * 10_000 + "d",
            "TOKENOPS['PURGE_WARN_AFTER']: Duration "
            f"'{'7' * 40}'... is too large (at most 10 years).",
        ),
    ],
)
def test_values_are_checked_and_echoed_cut(settings, key, value, message):
    settings.TOKENOPS = {key: value}
    with pytest.raises(TokenopsError) as raised:
        get_settings()
    assert str(raised.value).startswith(message)
    assert len(str(raised.value)) < 200


def test_leading_zeros_of_a_duration_setting_are_read_by_value(settings):
    settings.TOKENOPS = {"RUNNING_TIMEOUT": "0000002h", "OLDER_THAN": " 7D"}
    conf = get_settings()
    assert (conf.running_timeout, conf.older_than) == (timedelta(hours=2), timedelta(days=7))
    assert conf.older_than_text == "7d"


def test_many_unknown_keys_are_named_up_to_five_and_counted(settings):
    settings.TOKENOPS = {name: 1 for name in "ABCDEFG"} | {1: 2, "L" * 100: 3}
    with pytest.raises(TokenopsError) as raised:
        get_settings()
    assert str(raised.value) == "Unknown TOKENOPS setting(s): 1, A, B, C, D (+4)"


def test_a_long_unknown_key_is_cut(settings):
    settings.TOKENOPS = {"L" * 100: 3}
    with pytest.raises(TokenopsError) as raised:
        get_settings()
    assert str(raised.value) == f"Unknown TOKENOPS setting(s): {'L' * 40}..."


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("key", DURATIONS)
def test_bad_durations_name_the_key(manage, settings, command, key):
    settings.TOKENOPS = {key: "a week"}
    result = manage(*command)
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"CommandError: TOKENOPS['{key}']: Invalid duration 'a week'")
    assert result.err.count("\n") == 1
    assert not PurgeRun.objects.exists()


GOOD = {
    "OLDER_THAN": "1w2d",
    "BATCH_SIZE": 500,
    "BATCH_SECONDS": 1,
    "SLIDING_TOKENS": True,
    "REPORT_TOP": 0,
    "HISTORY_KEEP": None,
    "PURGE_WARN_AFTER": "30d",
    "RUNNING_TIMEOUT": "2h",
}


@pytest.mark.django_db(transaction=True)
def test_good_values_are_accepted(manage, settings):
    settings.TOKENOPS = GOOD
    assert manage("token_purge").code == 0
    assert manage("token_report").code == 0


def test_good_values_are_read_as_typed_values(settings):
    settings.TOKENOPS = {**GOOD, "OLDER_THAN": " 1W2D "}
    assert get_settings() == TokenopsSettings(
        older_than=timedelta(days=9),
        older_than_text="1w2d",
        batch_size=500,
        batch_seconds=1.0,
        sliding_tokens=True,
        report_top=0,
        history_keep=None,
        purge_warn_after=timedelta(days=30),
        running_timeout=timedelta(hours=2),
    )


@pytest.mark.parametrize("configured", [None, {}])
def test_no_tokenops_setting_gives_the_documented_defaults(settings, configured):
    if configured is None:
        del settings.TOKENOPS
    else:
        settings.TOKENOPS = configured
    assert get_settings() == TokenopsSettings(
        older_than=timedelta(0),
        older_than_text="0d",
        batch_size=None,
        batch_seconds=None,
        sliding_tokens="auto",
        report_top=10,
        history_keep=timedelta(days=365),
        purge_warn_after=timedelta(days=14),
        running_timeout=timedelta(hours=1),
    )


def test_the_example_project_states_every_default(settings):
    assert settings.TOKENOPS == DEFAULTS


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("BATCH_SIZE", MAX_ROWS, True),
        ("BATCH_SIZE", MAX_ROWS + 1, False),
        ("BATCH_SIZE", True, False),
        ("REPORT_TOP", MAX_ROWS, True),
        ("REPORT_TOP", -1, False),
        ("BATCH_SECONDS", 60, True),
        ("BATCH_SECONDS", 0.01, True),
        ("BATCH_SECONDS", 60.5, False),
        ("BATCH_SECONDS", True, False),
        ("SLIDING_TOKENS", "auto", True),
        ("SLIDING_TOKENS", False, True),
        ("SLIDING_TOKENS", "Auto", False),
    ],
)
def test_limits(settings, key, value, accepted):
    settings.TOKENOPS = {key: value}
    if accepted:
        assert getattr(get_settings(), key.lower()) == value
    else:
        with pytest.raises(TokenopsError, match=rf"^TOKENOPS\['{key}'\] must be "):
            get_settings()


def test_settings_are_read_afresh(settings):
    settings.TOKENOPS = {"REPORT_TOP": 3}
    assert get_settings().report_top == 3
    settings.TOKENOPS = {"REPORT_TOP": 4}
    assert get_settings().report_top == 4


def test_every_unknown_key_is_named_in_order(settings):
    settings.TOKENOPS = {"OLDER_THEN": "7d", "BATCH": 1, "REPORT_TOP": 1}
    with pytest.raises(TokenopsError) as raised:
        get_settings()
    assert str(raised.value) == "Unknown TOKENOPS setting(s): BATCH, OLDER_THEN"
