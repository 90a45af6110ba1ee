"""One function per deploy command: load the aggregates, decide, append.

A deployment touches two aggregates: the deployment itself and its
organization's dispatch queue (`dispatch.<org>`), whose optimistic concurrency
serialises the one-per-service-and-environment and N-per-organization rules.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import nats.errors
import structlog
from nats.js.kv import KeyValue

from libs.aggregate import AggregateType, Snapshots, change, load_state, retry_on_conflict
from libs.crypto import SecretBox
from libs.errors import DomainError, NotFound, ValidationFailed
from libs.events import Event
from libs.eventstore import EventStore
from libs.ids import new_id
from libs.messaging import CommandBus, CommandContext, Reply
from libs.principal import Principal, require
from libs.slugs import slugify
from services.deploy import commands as c
from services.deploy import decider as d
from services.deploy import jobs
from services.deploy.events import (
    CODECS,
    STREAM,
    DeploymentCreated,
    DeploymentDispatched,
    DeploymentQueued,
    EnvironmentCreated,
    ProjectCreated,
    ServiceCreated,
    SlotQueued,
    SlotTaken,
)
from services.deploy.runner import parse_command
from services.deploy.source import validate_ref, validate_repository

log = structlog.get_logger("deploy")

ENVIRONMENTS = AggregateType(
    "environment", CODECS["environment"], d.EnvironmentState(), d.evolve_environment
)
PROJECTS = AggregateType("project", CODECS["project"], d.ProjectState(), d.evolve_project)
SLUGS = AggregateType("project_slug", CODECS["project_slug"], d.SlugState(), d.evolve_slug)
SERVICES = AggregateType("service", CODECS["service"], d.ServiceState(), d.evolve_service)
DEPLOYMENTS = AggregateType(
    "deployment", CODECS["deployment"], d.DeploymentState(), d.evolve_deployment
)
PIPELINES = AggregateType("pipeline", CODECS["pipeline"], d.PipelineState(), d.evolve_pipeline)
DISPATCH = AggregateType("dispatch", CODECS["dispatch"], d.DispatchState(), d.evolve_dispatch)

CREDENTIALS = "environment-credentials"
SECRET_ENV = "service-env-var"


class DeployDeps:
    """The adapters the deploy handlers need; main.py builds the real ones."""

    def __init__(
        self,
        store: EventStore,
        box: SecretBox,
        pool: asyncpg.Pool,
        *,
        max_running: int,
        clock: Callable[[], datetime],
        bus: CommandBus | None = None,
        snapshots: KeyValue | None = None,
    ) -> None:
        self.store = store
        # The organization's queue is read on every create and finish: remembered.
        self.dispatch = Snapshots(DISPATCH, snapshots)
        self.box = box
        self.pool = pool
        self.max_running = max_running
        self.clock = clock
        # To ask the auth service for deployment tokens (None: issue none).
        self.bus = bus


def _position(seq: int) -> str:
    return f"{STREAM.context}:{seq}"


def _org(actor: Principal, given: str | None) -> str:
    org = given or actor.organization_id
    if org is None:
        raise ValidationFailed("name the organization", "$.organization_id")
    return org


def _changes(cmd: msgspec.Struct, *skip: str) -> dict[str, Any]:
    return {
        f: getattr(cmd, f)
        for f in cmd.__struct_fields__
        if f not in skip and getattr(cmd, f) is not None
    }


def _argv(command: str | list[str] | None, field: str) -> list[str]:
    return [] if command is None else parse_command(command, field)


async def _update(
    deps: DeployDeps,
    ctx: CommandContext,
    kind: AggregateType[Any],
    aggregate_id: str,
    decide: Callable[[Any], list[Event]],
) -> Reply:
    """Load, decide, append; again if someone else appended in between."""
    seq = await change(
        deps.store,
        kind,
        aggregate_id,
        decide,
        lambda state: ctx.event_context(getattr(state, "organization_id", None)),
    )
    return Reply(result=None, position=_position(seq) if seq else None)


# --- environments -------------------------------------------------------------------------


def _seal(deps: DeployDeps, credentials: dict[str, Any] | None) -> str | None:
    if credentials is None:
        return None
    return deps.box.seal(json.dumps(credentials).encode(), purpose=CREDENTIALS)


async def create_environment(
    deps: DeployDeps, cmd: c.CreateEnvironment, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    org = _org(actor, cmd.organization_id)
    environment_id = new_id("env")
    created = EnvironmentCreated(
        environment_id=environment_id,
        organization_id=org,
        name=cmd.name,
        provider=cmd.provider,
        environment_type=cmd.type,
        region=cmd.region,
        cluster=cmd.cluster,
        namespace=cmd.namespace,
        configuration=cmd.configuration,
        resource_limits=cmd.resource_limits,
        auto_deploy=cmd.auto_deploy,
        credentials_sealed=_seal(deps, cmd.credentials),
    )
    events = d.decide_create_environment(d.EnvironmentState(), actor, created)
    seq = await deps.store.append(
        "environment", environment_id, events, expected_version=0, context=ctx.event_context(org)
    )
    return Reply(result=c.Created(id=environment_id), position=_position(seq))


async def update_environment(
    deps: DeployDeps, cmd: c.UpdateEnvironment, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    changes = _changes(cmd, "environment_id", "credentials")
    sealed = _seal(deps, cmd.credentials)
    return await _update(
        deps,
        ctx,
        ENVIRONMENTS,
        cmd.environment_id,
        lambda s: d.decide_update_environment(s, actor, dict(changes), sealed),
    )


async def delete_environment(
    deps: DeployDeps, cmd: c.DeleteEnvironment, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    return await _update(
        deps, ctx, ENVIRONMENTS, cmd.environment_id, lambda s: d.decide_delete_environment(s, actor)
    )


# --- projects -----------------------------------------------------------------------------


async def create_project(deps: DeployDeps, cmd: c.CreateProject, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    org = _org(actor, cmd.organization_id)
    require(actor, "write", org)
    project_id = new_id("prj")
    slug = cmd.slug or slugify(cmd.name, "project")
    slug_key = f"{org}~{slug}"
    claim, version = await load_state(deps.store, SLUGS, slug_key)
    await deps.store.append(
        "project_slug",
        slug_key,
        d.decide_claim_slug(claim, project_id),
        expected_version=version,
        context=ctx.event_context(org),
    )
    created = ProjectCreated(
        project_id=project_id,
        organization_id=org,
        name=cmd.name,
        slug=slug,
        description=cmd.description,
    )
    events = d.decide_create_project(d.ProjectState(), actor, created)
    seq = await deps.store.append(
        "project", project_id, events, expected_version=0, context=ctx.event_context(org)
    )
    return Reply(result=c.Created(id=project_id), position=_position(seq))


async def update_project(deps: DeployDeps, cmd: c.UpdateProject, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    changes = _changes(cmd, "project_id")
    return await _update(
        deps,
        ctx,
        PROJECTS,
        cmd.project_id,
        lambda s: d.decide_update_project(s, actor, dict(changes)),
    )


async def delete_project(deps: DeployDeps, cmd: c.DeleteProject, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    live: int = await deps.pool.fetchval(
        "SELECT count(*) FROM deploy.services WHERE project_id = $1 AND deleted_at IS NULL",
        cmd.project_id,
    )
    return await _update(
        deps, ctx, PROJECTS, cmd.project_id, lambda s: d.decide_delete_project(s, actor, live)
    )


# --- services -----------------------------------------------------------------------------


async def create_service(deps: DeployDeps, cmd: c.CreateService, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    project, _ = await load_state(deps.store, PROJECTS, cmd.project_id)
    repository = validate_repository(cmd.repository_url)
    validate_ref(cmd.branch, "$.branch")
    service_id = new_id("svc")
    created = ServiceCreated(
        service_id=service_id,
        organization_id=project.organization_id or "",
        project_id=cmd.project_id,
        name=cmd.name,
        repository_url=repository,
        branch=cmd.branch,
        runtime=cmd.runtime,
        build_command=_argv(cmd.build_command, "$.build_command"),
        run_command=_argv(cmd.run_command, "$.run_command"),
        port=cmd.port,
        health_check_path=cmd.health_check_path,
        replicas=cmd.replicas,
        resources=cmd.resources,
        dependencies=cmd.dependencies,
        owner=cmd.owner,
    )
    events = d.decide_create_service(d.ServiceState(), project, actor, created)
    seq = await deps.store.append(
        "service",
        service_id,
        events,
        expected_version=0,
        context=ctx.event_context(project.organization_id),
    )
    return Reply(result=c.Created(id=service_id), position=_position(seq))


async def update_service(deps: DeployDeps, cmd: c.UpdateService, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    changes = _changes(cmd, "service_id")
    if "repository_url" in changes:
        changes["repository_url"] = validate_repository(changes["repository_url"])
    if "branch" in changes:
        validate_ref(changes["branch"], "$.branch")
    for field in ("build_command", "run_command"):
        if field in changes:
            changes[field] = _argv(changes[field], f"$.{field}")
    return await _update(
        deps,
        ctx,
        SERVICES,
        cmd.service_id,
        lambda s: d.decide_update_service(s, actor, dict(changes)),
    )


async def delete_service(deps: DeployDeps, cmd: c.DeleteService, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    active: int = await deps.pool.fetchval(
        "SELECT count(*) FROM deploy.deployments WHERE service_id = $1 AND status = ANY($2)",
        cmd.service_id,
        sorted(d.ACTIVE),
    )
    return await _update(
        deps, ctx, SERVICES, cmd.service_id, lambda s: d.decide_delete_service(s, actor, active)
    )


async def control_service(deps: DeployDeps, cmd: c.ControlService, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    return await _update(
        deps,
        ctx,
        SERVICES,
        cmd.service_id,
        lambda s: d.decide_control(s, actor, action=cmd.action, environment_id=cmd.environment_id),
    )


async def control_instance(deps: DeployDeps, cmd: c.ControlInstance, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    return await _update(
        deps,
        ctx,
        SERVICES,
        cmd.service_id,
        lambda s: d.decide_control_instance(
            s,
            actor,
            instance_id=cmd.instance_id,
            environment_id=cmd.environment_id,
            action=cmd.action,
        ),
    )


async def set_env_var(deps: DeployDeps, cmd: c.SetEnvVar, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    sealed = deps.box.seal(cmd.value.encode(), purpose=SECRET_ENV) if cmd.secret else None
    return await _update(
        deps,
        ctx,
        SERVICES,
        cmd.service_id,
        lambda s: d.decide_set_env_var(
            s,
            actor,
            key=cmd.key,
            value=None if cmd.secret else cmd.value,
            value_sealed=sealed,
            secret=cmd.secret,
        ),
    )


async def remove_env_var(deps: DeployDeps, cmd: c.RemoveEnvVar, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    return await _update(
        deps, ctx, SERVICES, cmd.service_id, lambda s: d.decide_remove_env_var(s, actor, cmd.key)
    )


# --- deployments --------------------------------------------------------------------------


async def _enqueue(
    deps: DeployDeps, ctx: CommandContext, org: str, deployment_id: str, key: str
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
                "dispatch", org, events, expected_version=version, context=ctx.event_context(org)
            )
        after = state
        for event in events:
            after = d.evolve_dispatch(after, event)
        deps.dispatch.remember(org, after, seq)
        return events, after, seq

    events, after, seq = await retry_on_conflict(attempt)
    await _save_dispatch(deps, org)
    return await _announce(deps, ctx, org, events, after, seq)


async def _save_dispatch(deps: DeployDeps, org: str) -> None:
    try:
        await deps.dispatch.save_if_due(org)
    except (nats.errors.Error, OSError) as exc:  # a snapshot is a cache: never fail for it
        log.warning("snapshot_not_saved", organization_id=org, error=str(exc))


async def _release(deps: DeployDeps, ctx: CommandContext, org: str, deployment_id: str) -> int:
    async def attempt() -> tuple[list[Event], d.DispatchState, int]:
        state, version = await deps.dispatch.load_state(deps.store, org)
        events = d.decide_release(state, deployment_id=deployment_id, limit=deps.max_running)
        seq = version
        if events:
            seq = await deps.store.append(
                "dispatch", org, events, expected_version=version, context=ctx.event_context(org)
            )
        after = state
        for event in events:
            after = d.evolve_dispatch(after, event)
        deps.dispatch.remember(org, after, seq)
        return events, after, seq

    events, after, seq = await retry_on_conflict(attempt)
    await _save_dispatch(deps, org)
    return await _announce(deps, ctx, org, events, after, seq)


async def _announce(
    deps: DeployDeps,
    ctx: CommandContext,
    org: str,
    events: list[Event],
    after: d.DispatchState,
    seq: int,
) -> int:
    """Tell each deployment what the queue decided for it (for its subscribers)."""
    taken = {e.deployment_id for e in events if isinstance(e, SlotTaken)}
    positions = d.queue_positions(after)
    for deployment_id in taken:
        seq = await _mark(deps, ctx, org, deployment_id, DeploymentDispatched())
        await jobs.publish(deps.store.js, deps.store.namespace, deployment_id)
    for event in events:
        if isinstance(event, SlotQueued) and event.deployment_id in positions:
            seq = await _mark(
                deps,
                ctx,
                org,
                event.deployment_id,
                DeploymentQueued(position=positions[event.deployment_id]),
            )
    return seq


async def _mark(
    deps: DeployDeps, ctx: CommandContext, org: str, deployment_id: str, event: Event
) -> int:
    async def attempt() -> int:
        _, version = await load_state(deps.store, DEPLOYMENTS, deployment_id)
        return await deps.store.append(
            "deployment",
            deployment_id,
            [event],
            expected_version=version,
            context=ctx.event_context(org),
        )

    return await retry_on_conflict(attempt)


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
    seq = await _enqueue(deps, ctx, org, deployment_id, f"{service_id}:{environment_id}")
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


async def rollback(deps: DeployDeps, cmd: c.Rollback, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    current, _ = await load_state(deps.store, DEPLOYMENTS, cmd.deployment_id)
    if current.deployment_id is None:
        raise NotFound("deployment not found")
    require(actor, "deploy", current.organization_id)
    target_id = cmd.to_deployment_id
    if target_id is None:
        target_id = await deps.pool.fetchval(
            "SELECT id FROM deploy.deployments WHERE service_id = $1 AND environment_id = $2 "
            "AND status = 'succeeded' AND id <> $3 ORDER BY finished_at DESC, id LIMIT 1",
            current.service_id,
            current.environment_id,
            current.deployment_id,
        )
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
        seq = await _release(deps, ctx, state.organization_id, cmd.deployment_id)
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
    seq = await _release(deps, ctx, state.organization_id or "", cmd.deployment_id)
    return Reply(result=None, position=_position(seq))


# --- the agent ----------------------------------------------------------------------------


async def agent_start(deps: DeployDeps, cmd: c.AgentStart, ctx: CommandContext) -> Reply:
    """An agent took the job: record it, and tell the agent what to run."""
    reply = await _update(
        deps, ctx, DEPLOYMENTS, cmd.deployment_id, lambda s: d.decide_start(s, cmd.agent_id)
    )
    deployment, _ = await load_state(deps.store, DEPLOYMENTS, cmd.deployment_id)
    service, _ = await load_state(deps.store, SERVICES, deployment.service_id or "")
    row = None
    # The start is recorded already: give a lagging read model a moment rather
    # than leave a started deployment without its agent.
    for _ in range(50):
        row = await deps.pool.fetchrow(
            "SELECT s.repository_url, s.build_command, s.run_command, s.port,"
            " s.health_check_path, s.replicas, d.ref, d.strategy, d.config"
            " FROM deploy.services s JOIN deploy.deployments d ON d.service_id = s.id"
            " WHERE d.id = $1",
            cmd.deployment_id,
        )
        if row is not None:
            break
        await asyncio.sleep(0.1)
    if row is None:
        raise NotFound("deployment not found in the read model yet")
    reuse = None
    if deployment.rollback_of is not None:
        target, _ = await load_state(deps.store, DEPLOYMENTS, deployment.rollback_of)
        reuse = target.release_id
    spec = c.JobSpec(
        deployment_id=cmd.deployment_id,
        organization_id=deployment.organization_id or "",
        service_id=deployment.service_id or "",
        environment_id=deployment.environment_id or "",
        repository_url=row["repository_url"],
        ref=row["ref"],
        strategy=row["strategy"],
        build_command=list(row["build_command"]),
        run_command=list(row["run_command"]),
        port=row["port"],
        health_check_path=row["health_check_path"],
        replicas=row["replicas"],
        env={key: _reveal(deps, var) for key, var in service.env.items()},
        reuse_release_id=reuse,
        deployment_token=await _deployment_token(deps, deployment, ctx),
        **await _pipeline_run(deps, deployment, row["config"]),
    )
    return Reply(result=spec, position=reply.position)


async def _pipeline_run(
    deps: DeployDeps, deployment: d.DeploymentState, config: dict[str, Any]
) -> dict[str, Any]:
    if deployment.pipeline_id is None:
        return {}
    pipeline, _ = await load_state(deps.store, PIPELINES, deployment.pipeline_id)
    parameters = config.get("parameters", {})
    return {
        "pipeline_steps": list(pipeline.steps),
        "parameters": {k: _parameter(v) for k, v in parameters.items()},
    }


def _parameter(value: object) -> str:
    # Steps read parameters from their environment: spelled as a shell would expect.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def _deployment_token(
    deps: DeployDeps, deployment: d.DeploymentState, ctx: CommandContext
) -> str | None:
    """A token for the deployment's scripts, on behalf of whoever started it."""
    if deps.bus is None or deployment.deployment_id is None:
        return None
    history = await deps.store.load("deployment", deployment.deployment_id, DEPLOYMENTS.codec)
    starter = history.events[0].meta.actor if history.events else None
    if starter is None:
        return None
    try:
        result = await deps.bus.request(
            "auth",
            "issue_deployment_token",
            {
                "deployment_id": deployment.deployment_id,
                "organization_id": deployment.organization_id,
                "user_id": starter,
            },
            request_id=ctx.request_id,
        )
    except DomainError as exc:
        log.warning(
            "deployment_token_unavailable",
            deployment_id=deployment.deployment_id,
            error=exc.message,
        )
        return None
    token: str = msgspec.json.decode(result.data)["token"]
    return token


def _reveal(deps: DeployDeps, var: d.EnvVar) -> str:
    if var.value_sealed is not None:
        return deps.box.open(var.value_sealed, purpose=SECRET_ENV).decode()
    return var.value or ""


async def agent_finish(deps: DeployDeps, cmd: c.AgentFinish, ctx: CommandContext) -> Reply:
    await _update(
        deps,
        ctx,
        DEPLOYMENTS,
        cmd.deployment_id,
        lambda s: d.decide_finish(
            s,
            None,
            succeeded=cmd.succeeded,
            reason=cmd.reason,
            step=cmd.step,
            commit_hash=cmd.commit_hash,
            release_id=cmd.release_id,
            address=cmd.address,
        ),
    )
    state, _ = await load_state(deps.store, DEPLOYMENTS, cmd.deployment_id)
    if cmd.succeeded and state.replaces is not None:
        await _update(
            deps,
            ctx,
            DEPLOYMENTS,
            state.replaces,
            lambda s: d.decide_rolled_back(s, cmd.deployment_id),
        )
    seq = await _release(deps, ctx, state.organization_id or "", cmd.deployment_id)
    return Reply(result=None, position=_position(seq))


async def fail_lost(deps: DeployDeps, deployment_id: str, reason: str) -> None:
    """Fail a deployment whose agent stopped renewing its lease (the watchdog)."""
    ctx = CommandContext()
    await _update(
        deps,
        ctx,
        DEPLOYMENTS,
        deployment_id,
        lambda s: (
            d.decide_finish(s, None, succeeded=False, reason=reason)
            if s.status in ("initializing", "running")
            else []
        ),
    )
    state, _ = await load_state(deps.store, DEPLOYMENTS, deployment_id)
    await _release(deps, ctx, state.organization_id or "", deployment_id)


async def service_env(deps: DeployDeps, cmd: c.ServiceEnv, ctx: CommandContext) -> Reply:
    """A service's env vars in clear, for an agent (never stored, never over HTTP)."""
    service, _ = await load_state(deps.store, SERVICES, cmd.service_id)
    if not service.exists:
        raise NotFound("service not found")
    return Reply(result={key: _reveal(deps, var) for key, var in service.env.items()})
