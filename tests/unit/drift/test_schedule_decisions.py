"""Scan schedules, given their events: every N seconds (at least a minute) or a cron line
of five fields; due once per slot and never for a backlog; one scan id per slot."""

from __future__ import annotations

import datetime as dt
from functools import reduce

import pytest

from libs.errors import NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal
from services.drift import schedules as sc
from services.drift.events import ScheduleFired, ScheduleSet

T0 = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
OWNER = Principal(user_id="usr_o", memberships={"org_1": "owner"})


def _set(**fields: object) -> ScheduleSet:
    base: dict[str, object] = {
        "organization_id": "org_1",
        "environment_id": "env_1",
        "interval_seconds": 300,
        "since": T0,
        "by": "usr_o",
    }
    return ScheduleSet(**{**base, **fields})  # type: ignore[arg-type]


def state_of(*events: Event) -> sc.ScheduleState:
    return reduce(sc.evolve_schedule, events, sc.ScheduleState())


def test_every_five_minutes_fires_once_per_slot_and_skips_a_backlog() -> None:
    every = state_of(_set())
    assert sc.decide_fire(every, T0 + dt.timedelta(minutes=4)) == []
    [fired] = sc.decide_fire(every, T0 + dt.timedelta(minutes=5, seconds=3))
    assert isinstance(fired, ScheduleFired) and fired.due == T0 + dt.timedelta(minutes=5)
    assert fired.scan_id == sc.scan_id_for("env_1", fired.due)
    after = sc.evolve_schedule(every, fired)
    assert sc.decide_fire(after, T0 + dt.timedelta(minutes=9)) == []
    # An hour later (nothing ran meanwhile): one scan, for the latest slot only.
    [late] = sc.decide_fire(after, T0 + dt.timedelta(minutes=62))
    assert isinstance(late, ScheduleFired) and late.due == T0 + dt.timedelta(minutes=60)


def test_a_cron_line_fires_at_its_times_in_utc() -> None:
    nightly = state_of(_set(interval_seconds=None, cron="30 2 * * *"))
    assert sc.decide_fire(nightly, T0) == []
    [fired] = sc.decide_fire(nightly, dt.datetime(2026, 12, 8, 2, 31, tzinfo=dt.UTC))
    assert isinstance(fired, ScheduleFired)
    assert fired.due == dt.datetime(2026, 12, 8, 2, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("interval", "cron", "field"),
    [
        (30, None, "$.interval_seconds"),
        (None, None, "$.interval_seconds"),
        (300, "* * * * *", "$.interval_seconds"),
        (None, "* * * * * *", "$.cron"),  # seconds: too often
        (None, "61 * * * *", "$.cron"),
    ],
)
def test_too_often_or_malformed_is_refused_naming_the_field(
    interval: int | None, cron: str | None, field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        sc.decide_set(
            sc.ScheduleState(), OWNER, _set(interval_seconds=interval, cron=cron),
            environment_org="org_1",
        )  # fmt: skip
    assert caught.value.details["field"] == field


def test_set_again_unchanged_is_nothing_and_a_removed_schedule_never_fires() -> None:
    every = state_of(_set())
    assert sc.decide_set(every, OWNER, _set(since=T0 + dt.timedelta(hours=1)),
                         environment_org="org_1") == []  # fmt: skip
    with pytest.raises(NotFound):
        sc.decide_set(sc.ScheduleState(), OWNER, _set(), environment_org="org_2")
    [removed] = sc.decide_remove(every, OWNER)
    gone = sc.evolve_schedule(every, removed)
    assert sc.decide_fire(gone, T0 + dt.timedelta(days=1)) == []
    with pytest.raises(NotFound):
        sc.decide_remove(gone, OWNER)
