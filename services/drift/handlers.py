"""One function per drift command: load the aggregates, decide, append. The environment
a resource belongs to is checked from the deploy context's own events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import msgspec

from libs.aggregate import AggregateType, change, load_state
from libs.errors import NotFound, ValidationFailed
from libs.events import EventContext
from libs.eventstore import EventStore
from libs.ids import new_id
from libs.messaging import CommandContext, Reply
from services.deploy.handlers.aggregates import ENVIRONMENTS
from services.drift import commands as c
from services.drift import ignore_rules as ig
from services.drift import resources as r
from services.drift import scans as s
from services.drift import schedules as sc
from services.drift import specs
from services.drift import triage as t
from services.drift.events import (
    CODECS,
    STREAM,
    IgnoreRuleAdded,
    ResourceRequested,
    ScanRequested,
    ScheduleSet,
)
from services.drift.scans import ScanState, decide_scan, evolve_scan

RESOURCES = AggregateType("resource", CODECS["resource"], r.ResourceState(), r.evolve_resource)


class DriftDeps:
    def __init__(self, store: EventStore) -> None:
        self.store = store


def position(seq: int | None) -> str | None:
    return f"{STREAM.context}:{seq}" if seq else None


def _stored(spec: specs.Spec) -> dict[str, object]:
    """The spec as stored: its fields with their defaults, as the door read them."""
    stored: dict[str, object] = msgspec.to_builtins(spec)
    return stored


async def request_resource(deps: DriftDeps, cmd: c.RequestResource, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    org = cmd.organization_id or actor.organization_id
    if org is None:
        raise ValidationFailed("name the organization", "$.organization_id")
    environment, _ = await load_state(deps.store, ENVIRONMENTS, cmd.environment_id)
    region = cmd.region or environment.region
    if not region:
        raise ValidationFailed("the environment has no region: name one", "$.region")
    spec = specs.check(cmd.type, cmd.specs)
    requested = ResourceRequested(
        resource_id=new_id("res"),
        organization_id=org,
        environment_id=cmd.environment_id,
        resource_type=cmd.type,
        provider=cmd.provider,
        region=region,
        specs=_stored(spec),
        tags=specs.check_tags(cmd.tags),
    )
    environment_org = environment.organization_id if environment.exists else None
    seq = await change(
        deps.store,
        RESOURCES,
        requested.resource_id,
        lambda s: r.decide_request(s, actor, requested, environment_org=environment_org),
        lambda _: ctx.event_context(org),
    )
    return Reply(result=c.Created(id=requested.resource_id), position=position(seq))


async def change_resource(deps: DriftDeps, cmd: c.ChangeResource, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    state, _ = await load_state(deps.store, RESOURCES, cmd.resource_id)
    r.require_resource(state, actor, "write")
    new_specs = None if cmd.specs is None else _stored(specs.check(state.type, cmd.specs))
    new_tags = None if cmd.tags is None else specs.check_tags(cmd.tags)
    seq = await change(
        deps.store,
        RESOURCES,
        cmd.resource_id,
        lambda s: r.decide_change(s, actor, specs=new_specs, tags=new_tags),
        lambda s: ctx.event_context(s.organization_id),
    )
    return Reply(result=None, position=position(seq))


async def delete_resource(deps: DriftDeps, cmd: c.DeleteResource, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await change(
        deps.store,
        RESOURCES,
        cmd.resource_id,
        lambda s: r.decide_delete(s, actor),
        lambda s: ctx.event_context(s.organization_id),
    )
    return Reply(result=None, position=position(seq))


SCANS = AggregateType("scan", CODECS["scan"], ScanState(), evolve_scan)


async def request_scan(deps: DriftDeps, cmd: c.RequestScan, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    environment, _ = await load_state(deps.store, ENVIRONMENTS, cmd.environment_id)
    if not environment.exists:
        raise NotFound("environment not found")
    org = environment.organization_id or ""
    requested = ScanRequested(
        scan_id=new_id("scan"),
        organization_id=org,
        environment_id=cmd.environment_id,
        initiated_by=actor.user_id,
    )
    seq = await change(
        deps.store,
        SCANS,
        requested.scan_id,
        lambda st: decide_scan(st, actor, requested, environment_org=org),
        lambda _: ctx.event_context(org),
    )
    return Reply(result=c.Created(id=requested.scan_id), position=position(seq))


# --- findings: acknowledge, ignore, reopen, remediate, accept --------------------------

FINDINGS = AggregateType("finding", CODECS["finding"], s.FindingState(), s.evolve_finding)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def acknowledge_finding(
    deps: DriftDeps, cmd: c.AcknowledgeFinding, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    seq = await change(
        deps.store,
        FINDINGS,
        cmd.finding_id,
        lambda st: t.decide_acknowledge(st, actor, cmd.reason),
        lambda st: ctx.event_context(st.organization_id),
    )
    return Reply(result=None, position=position(seq))


async def ignore_finding(deps: DriftDeps, cmd: c.IgnoreFinding, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await change(
        deps.store,
        FINDINGS,
        cmd.finding_id,
        lambda st: t.decide_ignore(st, actor, cmd.reason, cmd.until, now=_now()),
        lambda st: ctx.event_context(st.organization_id),
    )
    return Reply(result=None, position=position(seq))


async def act_on_finding(deps: DriftDeps, cmd: c.FindingCommand, ctx: CommandContext) -> Reply:
    """Reopen, remediate or accept. Remediation and acceptance change the finding's
    resource first (the effect: a job), then record on the finding who asked."""
    actor = ctx.caller()
    if cmd.action == "reopen":
        seq = await change(
            deps.store,
            FINDINGS,
            cmd.finding_id,
            lambda st: t.decide_reopen(st, actor),
            lambda st: ctx.event_context(st.organization_id),
        )
        return Reply(result=None, position=position(seq))

    def decide(state: s.FindingState, resource: r.ResourceState | None) -> t.Decided:
        if cmd.action == "remediate":
            return t.decide_remediate(
                state, actor, resource, deployment_id=cmd.deployment_id, now=_now()
            )
        return t.decide_accept(state, actor, resource)

    seq = await carry_out(deps.store, cmd.finding_id, decide, ctx.event_context)
    return Reply(result=None, position=position(seq))


Decide = Callable[[s.FindingState, r.ResourceState | None], t.Decided]


async def carry_out(
    store: EventStore,
    finding_id: str,
    decide: Decide,
    context: Callable[[str | None], EventContext],
) -> int | None:
    """A remediation or acceptance: the finding's resource changed first (the effect: a
    job), then the finding records who asked. Also a schedule's remediation."""
    finding, _ = await load_state(store, FINDINGS, finding_id)
    resource = None
    if finding.resource_id and finding.resource_type in t.INFRASTRUCTURE:
        resource, _ = await load_state(store, RESOURCES, finding.resource_id)
    decided = decide(finding, resource)
    if decided.resource and finding.resource_id:
        await change(
            store,
            RESOURCES,
            finding.resource_id,
            lambda st: decide(finding, st).resource,
            lambda st: context(st.organization_id),
        )
    return await change(
        store,
        FINDINGS,
        finding_id,
        lambda _: decided.finding,
        lambda st: context(st.organization_id),
    )


# --- ignore rules ------------------------------------------------------------------------

RULES = AggregateType("ignore_rule", CODECS["ignore_rule"], ig.RuleState(), ig.evolve_rule)


async def add_ignore_rule(deps: DriftDeps, cmd: c.AddIgnoreRule, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    environment, _ = await load_state(deps.store, ENVIRONMENTS, cmd.environment_id)
    org = environment.organization_id if environment.exists else None
    added = IgnoreRuleAdded(
        rule_id=new_id("ign"),
        organization_id=org or "",
        environment_id=cmd.environment_id,
        resource_type=cmd.resource_type,
        resource=cmd.resource,
        pointer=cmd.pointer,
        reason=cmd.reason,
        expires_at=cmd.expires_at,
        by=actor.user_id,
    )
    if org is None:
        raise NotFound("environment not found")
    seq = await change(
        deps.store,
        RULES,
        added.rule_id,
        lambda st: ig.decide_add(st, actor, added, environment_org=org, now=_now()),
        lambda _: ctx.event_context(org),
    )
    return Reply(result=c.Created(id=added.rule_id), position=position(seq))


async def remove_ignore_rule(
    deps: DriftDeps, cmd: c.RemoveIgnoreRule, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    seq = await change(
        deps.store,
        RULES,
        cmd.rule_id,
        lambda st: ig.decide_remove(st, actor),
        lambda st: ctx.event_context(st.organization_id),
    )
    return Reply(result=None, position=position(seq))


# --- schedules ---------------------------------------------------------------------------

SCHEDULES = AggregateType("schedule", CODECS["schedule"], sc.ScheduleState(), sc.evolve_schedule)


async def set_schedule(deps: DriftDeps, cmd: c.SetSchedule, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    environment, _ = await load_state(deps.store, ENVIRONMENTS, cmd.environment_id)
    if not environment.exists:
        raise NotFound("environment not found")
    org = environment.organization_id or ""
    wanted = ScheduleSet(
        organization_id=org,
        environment_id=cmd.environment_id,
        interval_seconds=cmd.interval_seconds,
        cron=cmd.cron,
        mode=cmd.mode,
        since=_now(),
        by=actor.user_id,
    )
    seq = await change(
        deps.store,
        SCHEDULES,
        cmd.environment_id,
        lambda st: sc.decide_set(st, actor, wanted, environment_org=org),
        lambda _: ctx.event_context(org),
    )
    return Reply(result=None, position=position(seq))


async def remove_schedule(deps: DriftDeps, cmd: c.RemoveSchedule, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await change(
        deps.store,
        SCHEDULES,
        cmd.environment_id,
        lambda st: sc.decide_remove(st, actor),
        lambda st: ctx.event_context(st.organization_id),
    )
    return Reply(result=None, position=position(seq))
