"""Deployment commands: create, roll back, cancel, report a step, finish.

A deployment touches two aggregates: the deployment itself and its
organization's dispatch queue (`dispatch.<org>`), whose optimistic concurrency
serialises the one-per-service-and-environment and N-per-organization rules.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import structlog

from libs.aggregate import load_state, retry_on_conflict
from libs.errors import NotFound
from libs.events import Event, EventContext
from libs.ids import new_id
from libs.messaging import CommandContext, Reply
from libs.principal import require
from services.deploy import commands as c
from services.deploy import decider as d
from services.deploy import jobs
from services.deploy.events import (
    DeploymentCreated,
    DeploymentDispatched,
    DeploymentQueued,
    SlotQueued,
    SlotTaken,
)
from services.deploy.handlers.aggregates import (
    DEPLOYMENTS,
    ENVIRONMENTS,
    SERVICES,
    DeployDeps,
    _position,
    _update,
)
from services.deploy.reconcile import Dispatch, Enqueue, MarkQueued, Release, Step
from services.deploy.source import validate_ref

log = structlog.get_logger("deploy")


async def _enqueue(
    deps: DeployDeps, context: EventContext, org: str, deployment_id: str, key: str
) -> int:
    """Put the deployment in its organization's queue; mark what that dispatched."""

    async def attempt() -> tuple[list[Event], d.DispatchState, int]:
        state, version = await deps.dispatch.load_state(deps.store, org)
        events = d.decide_enqueue(
            state, deployment_id=deployment_id, key=key, limit=deps.max_running
        )
        seq = version
        if events:
            seq = await deps.store.append(
                "dispatch", org, events, expected_version=version, context=context
            )
        after = state
        for event in events:
            after = d.evolve_dispatch(after, event)
        deps.dispatch.remember(org, after, seq)
        return events, after, seq

    events, after, seq = await retry_on_conflict(attempt)
    await _save_dispatch(deps, org)
    return await _announce(deps, context, events, after, seq)


async def _save_dispatch(deps: DeployDeps, org: str) -> None:
    try:
        await deps.dispatch.save_if_due(org)
    except (nats.errors.Error, OSError) as exc:  # a snapshot is a cache: never fail for it
        log.warning("snapshot_not_saved", organization_id=org, error=str(exc))


async def _release(deps: DeployDeps, context: EventContext, org: str, deployment_id: str) -> int:
    async def attempt() -> tuple[list[Event], d.DispatchState, int]:
        state, version = await deps.dispatch.load_state(deps.store, org)
        events = d.decide_release(state, deployment_id=deployment_id, limit=deps.max_running)
        seq = version
        if events:
            seq = await deps.store.append(
                "dispatch", org, events, expected_version=version, context=context
            )
        after = state
        for event in events:
            after = d.evolve_dispatch(after, event)
        deps.dispatch.remember(org, after, seq)
        return events, after, seq

    events, after, seq = await retry_on_conflict(attempt)
    await _save_dispatch(deps, org)
    return await _announce(deps, context, events, after, seq)


async def _announce(
    deps: DeployDeps,
    context: EventContext,
    events: list[Event],
    after: d.DispatchState,
    seq: int,
) -> int:
    """Tell each deployment what the queue decided for it (for its subscribers)."""
    taken = {e.deployment_id for e in events if isinstance(e, SlotTaken)}
    positions = d.queue_positions(after)
    for deployment_id in taken:
        seq = max(seq, await _dispatch(deps, context, deployment_id))
    for event in events:
        if isinstance(event, SlotQueued) and event.deployment_id in positions:
            marked = await _mark(
                deps,
                context,
                event.deployment_id,
                DeploymentQueued(position=positions[event.deployment_id]),
                when=("created",),
            )
            seq = max(seq, marked)
    return seq


async def _dispatch(deps: DeployDeps, context: EventContext, deployment_id: str) -> int:
    """Mark a deployment that took a slot dispatched (once), then hand its job to the
    agents (deduplicated by JetStream; a job for a deployment already started is
    refused by agent_start)."""
    seq = await _mark(
        deps, context, deployment_id, DeploymentDispatched(), when=("created", "queued")
    )
    await jobs.publish(deps.store.js, deps.store.namespace, deployment_id)
    return seq


async def _mark(
    deps: DeployDeps,
    context: EventContext,
    deployment_id: str,
    event: Event,
    *,
    when: tuple[str, ...],
) -> int:
    """Append `event` to the deployment if its status is one of `when` (0 otherwise):
    the command and the dispatch process may both try, and only one succeeds."""

    async def attempt() -> int:
        state, version = await load_state(deps.store, DEPLOYMENTS, deployment_id)
        if state.status not in when:
            return 0
        return await deps.store.append(
            "deployment", deployment_id, [event], expected_version=version, context=context
        )

    return await retry_on_conflict(attempt)


async def carry_out(
    deps: DeployDeps, context: EventContext, deployment: d.DeploymentState, step: Step
) -> int:
    """Do one step `reconcile` chose for `deployment`; the last stream position."""
    deployment_id = deployment.deployment_id or ""
    org = deployment.organization_id or ""
    match step:
        case Enqueue():
            key = f"{deployment.service_id}:{deployment.environment_id}"
            return await _enqueue(deps, context, org, deployment_id, key)
        case MarkQueued():
            queue, _ = await deps.dispatch.load_state(deps.store, org)
            position = d.queue_positions(queue).get(deployment_id)
            if position is None:
                return 0
            return await _mark(
                deps, context, deployment_id, DeploymentQueued(position=position), when=("created",)
            )
        case Dispatch():
            return await _dispatch(deps, context, deployment_id)
        case Release():
            return await _release(deps, context, org, deployment_id)
    return 0


async def _create(
    deps: DeployDeps,
    ctx: CommandContext,
    *,
    service_id: str,
    environment_id: str,
    ref: str | None,
    strategy: str,
    notify_channels: list[str],
    config: dict[str, Any],
    rollback_of: str | None = None,
    replaces: str | None = None,
    pipeline_id: str | None = None,
) -> Reply:
    actor = ctx.caller()
    service, _ = await load_state(deps.store, SERVICES, service_id)
    environment, _ = await load_state(deps.store, ENVIRONMENTS, environment_id)
    target = None
    if rollback_of is not None:
        target, _ = await load_state(deps.store, DEPLOYMENTS, rollback_of)
    chosen_ref = validate_ref(ref or service.branch)
    deployment_id = new_id("dpl")
    created = DeploymentCreated(
        deployment_id=deployment_id,
        organization_id=service.organization_id or "",
        project_id=service.project_id or "",
        service_id=service_id,
        environment_id=environment_id,
        ref=chosen_ref,
        strategy=strategy,
        notify_channels=notify_channels,
        config=config,
        rollback_of=rollback_of,
        replaces=replaces,
        pipeline_id=pipeline_id,
    )
    events = d.decide_create_deployment(
        d.DeploymentState(),
        actor,
        service=service,
        environment=environment,
        created=created,
        rollback_target=target,
    )
    org = created.organization_id
    await deps.store.append(
        "deployment", deployment_id, events, expected_version=0, context=ctx.event_context(org)
    )
    seq = await _enqueue(
        deps, ctx.event_context(org), org, deployment_id, f"{service_id}:{environment_id}"
    )
    return Reply(result=c.Created(id=deployment_id), position=_position(seq))


async def create_deployment(
    deps: DeployDeps, cmd: c.CreateDeployment, ctx: CommandContext
) -> Reply:
    return await _create(
        deps,
        ctx,
        service_id=cmd.service_id,
        environment_id=cmd.environment_id,
        ref=cmd.ref,
        strategy=cmd.strategy,
        notify_channels=cmd.notify_channels,
        config=cmd.config,
    )


async def _last_good(deps: DeployDeps, current: d.DeploymentState) -> str | None:
    """The newest deployment of the same service and environment, queued before
    `current`, that succeeded: from the organization's queue and the deployments'
    own histories."""
    queue, _ = await deps.dispatch.load_state(deps.store, current.organization_id or "")
    for earlier in d.earlier_deployments(queue, current.key, current.deployment_id or ""):
        state, _ = await load_state(deps.store, DEPLOYMENTS, earlier)
        if state.status == "succeeded":
            return earlier
    return None


async def rollback(deps: DeployDeps, cmd: c.Rollback, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    current, _ = await load_state(deps.store, DEPLOYMENTS, cmd.deployment_id)
    if current.deployment_id is None:
        raise NotFound("deployment not found")
    require(actor, "deploy", current.organization_id)
    target_id = cmd.to_deployment_id
    if target_id is None:
        target_id = await _last_good(deps, current)
        if target_id is None:
            raise NotFound(
                "no earlier deployment succeeded to roll back to", {"field": "$.deployment_id"}
            )
    return await _create(
        deps,
        ctx,
        service_id=current.service_id or "",
        environment_id=current.environment_id or "",
        ref=None,
        strategy="blue-green",
        notify_channels=[],
        config={},
        rollback_of=target_id,
        replaces=current.deployment_id,
    )


async def cancel_deployment(
    deps: DeployDeps, cmd: c.CancelDeployment, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    reply = await _update(
        deps, ctx, DEPLOYMENTS, cmd.deployment_id, lambda s: d.decide_cancel(s, actor)
    )
    state, _ = await load_state(deps.store, DEPLOYMENTS, cmd.deployment_id)
    if state.organization_id:
        org = state.organization_id
        seq = await _release(deps, ctx.event_context(org), org, cmd.deployment_id)
        return Reply(result=None, position=_position(seq))
    return reply


async def report_step(deps: DeployDeps, cmd: c.ReportStep, ctx: CommandContext) -> Reply:
    return await _update(
        deps,
        ctx,
        DEPLOYMENTS,
        cmd.deployment_id,
        lambda s: d.decide_report_step(
            s,
            ctx.principal,
            name=cmd.name,
            state_name=cmd.state,
            message=cmd.message,
            error_message=cmd.error_message,
        ),
    )


async def finish_deployment(
    deps: DeployDeps, cmd: c.FinishDeployment, ctx: CommandContext
) -> Reply:
    await _update(
        deps,
        ctx,
        DEPLOYMENTS,
        cmd.deployment_id,
        lambda s: d.decide_finish(
            s, ctx.principal, succeeded=cmd.status == "success", reason=cmd.message
        ),
    )
    state, _ = await load_state(deps.store, DEPLOYMENTS, cmd.deployment_id)
    org = state.organization_id or ""
    seq = await _release(deps, ctx.event_context(org), org, cmd.deployment_id)
    return Reply(result=None, position=_position(seq))
