"""One function per drift command: load the aggregates, decide, append. The environment
a resource belongs to is checked from the deploy context's own events."""

from __future__ import annotations

import msgspec

from libs.aggregate import AggregateType, change, load_state
from libs.errors import NotFound, ValidationFailed
from libs.eventstore import EventStore
from libs.ids import new_id
from libs.messaging import CommandContext, Reply
from services.deploy.handlers.aggregates import ENVIRONMENTS
from services.drift import commands as c
from services.drift import resources as r
from services.drift import specs
from services.drift.events import CODECS, STREAM, ResourceRequested, ScanRequested
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
