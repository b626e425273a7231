"""tokenops.models: PurgeRun's own logic (outcome_at, text, order) and TokenHygiene's
permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission

from tokenops.models import PurgeRun, TokenHygiene

Outcome = PurgeRun.Outcome
NOON = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


def run_at(heartbeat: datetime, outcome: str = Outcome.RUNNING) -> PurgeRun:
    return PurgeRun(
        started_at=heartbeat - timedelta(minutes=5),
        heartbeat_at=heartbeat,
        trigger=PurgeRun.Trigger.COMMAND,
        database="default",
        outcome=outcome,
    )


def test_a_running_row_silent_since_before_the_limit_was_interrupted():
    run = run_at(NOON)
    assert run.outcome_at(NOON + timedelta(microseconds=1)) == Outcome.INTERRUPTED
    assert run.outcome_at(NOON + timedelta(days=30)) == Outcome.INTERRUPTED
    assert run.outcome == Outcome.RUNNING  # it says so, it does not write it


def test_a_running_row_with_a_heartbeat_at_or_after_the_limit_is_running():
    run = run_at(NOON)
    assert run.outcome_at(NOON) == Outcome.RUNNING
    assert run.outcome_at(NOON - timedelta(microseconds=1)) == Outcome.RUNNING


@pytest.mark.parametrize("outcome", [Outcome.OK, Outcome.FAILED, Outcome.INTERRUPTED])
def test_a_finished_row_keeps_its_outcome(outcome):
    assert run_at(NOON, outcome).outcome_at(NOON + timedelta(days=1)) == outcome


def test_outcome_at_works_on_naive_values_too():
    """USE_TZ=False stores naive local time; the limit comes in the same form."""
    naive = NOON.replace(tzinfo=None)
    assert run_at(naive).outcome_at(naive + timedelta(hours=1)) == Outcome.INTERRUPTED
    assert run_at(naive).outcome_at(naive - timedelta(hours=1)) == Outcome.RUNNING


def test_a_new_row_is_running_and_not_a_dry_run():
    run = PurgeRun()
    assert (run.outcome, run.dry_run, run.error, run.started_by) == ("running", False, "", "")


def test_text_is_start_and_outcome():
    assert str(run_at(NOON + timedelta(minutes=5), Outcome.FAILED)) == "2030-05-17 12:00 failed"
    assert str(run_at(NOON + timedelta(minutes=5))) == "2030-05-17 12:00 running"


@pytest.mark.django_db
def test_runs_are_listed_newest_first_then_last_written_first():
    def saved(started: datetime) -> PurgeRun:
        return PurgeRun.objects.create(
            started_at=started, heartbeat_at=started, trigger="command", database="default"
        )

    early = saved(NOON - timedelta(days=1))
    first_twin = saved(NOON)
    second_twin = saved(NOON)
    assert list(PurgeRun.objects.all()) == [second_twin, first_twin, early]


@pytest.mark.django_db
def test_token_hygiene_carries_the_page_permissions_and_no_table():
    hygiene = Permission.objects.filter(
        content_type__app_label="tokenops", content_type__model="tokenhygiene"
    )
    codenames = set(hygiene.values_list("codename", flat=True))
    assert codenames == {"view_token_hygiene", "run_purge"}
    assert TokenHygiene._meta.managed is False
    assert str(TokenHygiene()) == "token hygiene"
