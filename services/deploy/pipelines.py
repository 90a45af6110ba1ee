"""Pipeline commands (the platform API): create, change, delete and run a pipeline.

A pipeline is named ordered steps for a service; a run is a deployment of the
service whose steps run after the build (handlers/deployments.py creates and queues it).
"""

from __future__ import annotations

from libs.aggregate import load_state
from libs.ids import new_id
from libs.messaging import CommandContext, Reply
from services.deploy import commands as c
from services.deploy import decider as d
from services.deploy.events import PipelineCreated, PipelineStepSpec
from services.deploy.handlers import (
    PIPELINES,
    SERVICES,
    DeployDeps,
    _argv,
    _create,
    _position,
    _update,
)


def _steps(steps: list[c.PipelineStepBody]) -> list[PipelineStepSpec]:
    return [
        PipelineStepSpec(name=step.name, command=_argv(step.command, f"$.steps[{n}].command"))
        for n, step in enumerate(steps)
    ]


async def create_pipeline(deps: DeployDeps, cmd: c.CreatePipeline, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    service, _ = await load_state(deps.store, SERVICES, cmd.service_id)
    pipeline_id = new_id("ppl")
    created = PipelineCreated(
        pipeline_id=pipeline_id,
        organization_id=service.organization_id or "",
        service_id=cmd.service_id,
        name=cmd.name,
        steps=_steps(cmd.steps),
    )
    events = d.decide_create_pipeline(d.PipelineState(), service, actor, created)
    seq = await deps.store.append(
        "pipeline",
        pipeline_id,
        events,
        expected_version=0,
        context=ctx.event_context(service.organization_id),
    )
    return Reply(result=c.Created(id=pipeline_id), position=_position(seq))


async def update_pipeline(deps: DeployDeps, cmd: c.UpdatePipeline, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    steps = None if cmd.steps is None else _steps(cmd.steps)
    return await _update(
        deps,
        ctx,
        PIPELINES,
        cmd.pipeline_id,
        lambda s: d.decide_update_pipeline(s, actor, name=cmd.name, steps=steps),
    )


async def delete_pipeline(deps: DeployDeps, cmd: c.DeletePipeline, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    return await _update(
        deps, ctx, PIPELINES, cmd.pipeline_id, lambda s: d.decide_delete_pipeline(s, actor)
    )


async def run_pipeline(deps: DeployDeps, cmd: c.RunPipeline, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    pipeline, _ = await load_state(deps.store, PIPELINES, cmd.pipeline_id)
    d.require_pipeline(pipeline, actor, "deploy")
    return await _create(
        deps,
        ctx,
        service_id=pipeline.service_id or "",
        environment_id=cmd.environment_id,
        ref=cmd.branch,
        strategy="blue-green",
        notify_channels=[],
        config={"parameters": dict(cmd.parameters)},
        pipeline_id=cmd.pipeline_id,
    )
