"""Commands on the deploy resources: environments, projects, services (with their
controls and env vars). Each loads its aggregate, decides and appends.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from libs.aggregate import change, load_state, retry_on_conflict
from libs.errors import ValidationFailed
from libs.ids import new_id
from libs.messaging import CommandContext, Reply
from libs.principal import Principal, require
from libs.slugs import slugify
from services.deploy import commands as c
from services.deploy import decider as d
from services.deploy.events import EnvironmentCreated, ProjectCreated, ServiceCreated
from services.deploy.handlers.aggregates import (
    ENVIRONMENTS,
    PROJECTS,
    SECRET_ENV,
    SERVICES,
    SLUGS,
    DeployDeps,
    _position,
    _update,
)
from services.deploy.runner import parse_command
from services.deploy.source import validate_ref, validate_repository

CREDENTIALS = "environment-credentials"


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
        lists_services=True,
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

    async def attempt() -> int | None:
        project, version = await load_state(deps.store, PROJECTS, cmd.project_id)
        live = await _live_services(deps, project, cmd.project_id)
        events = d.decide_delete_project(project, actor, live)
        return await deps.store.append(
            "project",
            cmd.project_id,
            events,
            expected_version=version,
            context=ctx.event_context(project.organization_id),
        )

    seq = await retry_on_conflict(attempt)
    return Reply(result=None, position=_position(seq) if seq else None)


async def _live_services(deps: DeployDeps, project: d.ProjectState, project_id: str) -> int:
    """How many of the project's services exist and are not deleted, from their events.
    A service begun but never created (its command crashed between the two appends)
    does not count."""
    if not project.lists_services:  # a project from before `project.service_added`
        legacy: int = await deps.pool.fetchval(
            "SELECT count(*) FROM deploy.services WHERE project_id = $1 AND deleted_at IS NULL",
            project_id,
        )
        return legacy
    live = 0
    for service_id in project.services:
        service, _ = await load_state(deps.store, SERVICES, service_id)
        live += service.exists
    return live


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
    org = project.organization_id or ""
    await change(
        deps.store,
        PROJECTS,
        cmd.project_id,
        lambda p: d.decide_add_service(p, actor, org, service_id),
        lambda _: ctx.event_context(org),
    )
    events = d.decide_create_service(d.ServiceState(), project, actor, created)
    seq = await deps.store.append(
        "service", service_id, events, expected_version=0, context=ctx.event_context(org)
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
    service, _ = await load_state(deps.store, SERVICES, cmd.service_id)
    active = 0
    if service.organization_id:
        queue, _ = await deps.dispatch.load_state(deps.store, service.organization_id)
        active = len(d.in_progress(queue, cmd.service_id))
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
