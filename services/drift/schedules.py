"""Scan schedules, one per environment: every N seconds or on a cron line (UTC), in mode
`detect` or `remediate`. Pure.

A schedule fires at most once per due time, and never for a backlog: after a
pause (no drift service running) only the latest due time fires. Its scan id
is derived from the environment and the due time, so that two drift replicas
firing the same schedule request one scan. Rate limits: an interval of at least
a minute, a cron line of five fields (a minute at most), and in remediate mode
a finding is remediated at most once an hour, at most ten a scan, and only
infrastructure (re-applied or re-made; something nobody declared is never
deleted). Services are redeployed by a person: that is a deployment.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import msgspec
from croniter import croniter

from libs.errors import NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal, require
from services.drift.events import ScheduleFired, ScheduleRemoved, ScheduleSet

MIN_INTERVAL = 60
DETECT, REMEDIATE = "detect", "remediate"
REMEDIATE_EVERY = dt.timedelta(hours=1)  # per finding
REMEDIATE_AT_MOST = 10  # per scan


class ScheduleState(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str | None = None
    organization_id: str | None = None
    interval_seconds: int | None = None
    cron: str | None = None
    mode: str = DETECT
    since: dt.datetime | None = None
    last_due: dt.datetime | None = None
    removed: bool = False

    @property
    def active(self) -> bool:
        return self.environment_id is not None and not self.removed


def evolve_schedule(state: ScheduleState, event: Event) -> ScheduleState:
    replace = msgspec.structs.replace
    match event:
        case ScheduleSet():
            return ScheduleState(
                environment_id=event.environment_id,
                organization_id=event.organization_id,
                interval_seconds=event.interval_seconds,
                cron=event.cron,
                mode=event.mode,
                since=event.since,
                last_due=state.last_due,
            )
        case ScheduleRemoved():
            return replace(state, removed=True)
        case ScheduleFired():
            return replace(state, last_due=event.due)
    return state


def check(interval_seconds: int | None, cron: str | None) -> None:
    if (interval_seconds is None) == (cron is None):
        raise ValidationFailed("give either interval_seconds or cron", "$.interval_seconds")
    if interval_seconds is not None and interval_seconds < MIN_INTERVAL:
        raise ValidationFailed(
            f"scans run at most every {MIN_INTERVAL} seconds", "$.interval_seconds"
        )
    if cron is not None and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
        raise ValidationFailed(
            "a cron line of five fields: minute hour day-of-month month day-of-week", "$.cron"
        )


def decide_set(
    state: ScheduleState, actor: Principal, wanted: ScheduleSet, *, environment_org: str | None
) -> list[Event]:
    require(actor, "write", wanted.organization_id)
    if environment_org != wanted.organization_id:
        raise NotFound("environment not found")
    check(wanted.interval_seconds, wanted.cron)
    unchanged = state.active and (state.interval_seconds, state.cron, state.mode) == (
        wanted.interval_seconds,
        wanted.cron,
        wanted.mode,
    )
    return [] if unchanged else [wanted]


def decide_remove(state: ScheduleState, actor: Principal) -> list[Event]:
    if not state.active:
        raise NotFound("the environment has no drift schedule")
    require(actor, "write", state.organization_id)
    return [ScheduleRemoved(by=actor.user_id)]


def due(state: ScheduleState, now: dt.datetime) -> dt.datetime | None:
    """The latest due time at or before `now` not fired yet, if there is one."""
    if not state.active or state.since is None:
        return None
    start = state.last_due or state.since
    if state.interval_seconds is not None:
        step = state.interval_seconds
        passed = int((now - state.since).total_seconds() // step)
        latest = state.since + dt.timedelta(seconds=passed * step)
    else:
        latest = croniter(state.cron, now).get_prev(dt.datetime)
    return latest if latest > start else None


def scan_id_for(environment_id: str, when: dt.datetime) -> str:
    digest = hashlib.sha256(f"{environment_id}\n{when.isoformat()}".encode()).hexdigest()
    return f"scan_{digest[:24]}"


def decide_fire(state: ScheduleState, now: dt.datetime) -> list[Event]:
    when = due(state, now)
    if when is None or state.environment_id is None:
        return []
    return [ScheduleFired(scan_id=scan_id_for(state.environment_id, when), due=when)]
