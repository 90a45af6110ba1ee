"""What the deploy agent asks and reports: it takes a job (and is told what to run),
finishes it, and reads a service's env vars; and the watchdog fails a lost one.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog

from libs.aggregate import load_state
from libs.errors import DomainError, NotFound
from libs.messaging import CommandContext, Reply
from services.deploy import commands as c
from services.deploy import decider as d
from services.deploy.handlers.aggregates import (
    DEPLOYMENTS,
    PIPELINES,
    SECRET_ENV,
    SERVICES,
    DeployDeps,
    _position,
    _update,
)
from services.deploy.handlers.deployments import _release

log = structlog.get_logger("deploy")


async def agent_start(deps: DeployDeps, cmd: c.AgentStart, ctx: CommandContext) -> Reply:
    """An agent took the job: record it, and tell the agent what to run."""
    reply = await _update(
        deps, ctx, DEPLOYMENTS, cmd.deployment_id, lambda s: d.decide_start(s, cmd.agent_id)
    )
    deployment, _ = await load_state(deps.store, DEPLOYMENTS, cmd.deployment_id)
    # Both from their events: the read model may not have applied them yet.
    service, _ = await load_state(deps.store, SERVICES, deployment.service_id or "")
    reuse = None
    if deployment.rollback_of is not None:
        target, _ = await load_state(deps.store, DEPLOYMENTS, deployment.rollback_of)
        reuse = target.release_id
    spec = c.JobSpec(
        deployment_id=cmd.deployment_id,
        organization_id=deployment.organization_id or "",
        service_id=deployment.service_id or "",
        environment_id=deployment.environment_id or "",
        repository_url=service.repository_url,
        ref=deployment.ref,
        strategy=deployment.strategy,
        build_command=list(service.build_command),
        run_command=list(service.run_command),
        port=service.port,
        health_check_path=service.health_check_path,
        replicas=service.replicas,
        env={key: _reveal(deps, var) for key, var in service.env.items()},
        reuse_release_id=reuse,
        deployment_token=await _deployment_token(deps, deployment, ctx),
        **await _pipeline_run(deps, deployment, deployment.config),
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
    org = state.organization_id or ""
    seq = await _release(deps, ctx.event_context(org), org, cmd.deployment_id)
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
    org = state.organization_id or ""
    await _release(deps, ctx.event_context(org), org, deployment_id)


async def service_env(deps: DeployDeps, cmd: c.ServiceEnv, ctx: CommandContext) -> Reply:
    """A service's env vars in clear, for an agent (never stored, never over HTTP)."""
    service, _ = await load_state(deps.store, SERVICES, cmd.service_id)
    if not service.exists:
        raise NotFound("service not found")
    return Reply(result={key: _reveal(deps, var) for key, var in service.env.items()})
