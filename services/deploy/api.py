"""The deploy service's NATS micro endpoints: decode, call the handler, encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from libs.messaging import CommandContext, Endpoint, Reply
from services.deploy import commands as c
from services.deploy import handlers as h
from services.deploy.handlers import DeployDeps

C = TypeVar("C", bound=msgspec.Struct)

SERVICE = "deploy"


def _bind(
    deps: DeployDeps,
    command: type[C],
    handler: Callable[[DeployDeps, C, CommandContext], Awaitable[Reply]],
) -> Endpoint[C]:
    async def call(cmd: C, ctx: CommandContext) -> Reply:
        return await handler(deps, cmd, ctx)

    return Endpoint(command, call)


def endpoints(deps: DeployDeps) -> dict[str, Endpoint[Any]]:
    return {
        "create_environment": _bind(deps, c.CreateEnvironment, h.create_environment),
        "update_environment": _bind(deps, c.UpdateEnvironment, h.update_environment),
        "delete_environment": _bind(deps, c.DeleteEnvironment, h.delete_environment),
        "create_project": _bind(deps, c.CreateProject, h.create_project),
        "update_project": _bind(deps, c.UpdateProject, h.update_project),
        "delete_project": _bind(deps, c.DeleteProject, h.delete_project),
        "create_service": _bind(deps, c.CreateService, h.create_service),
        "update_service": _bind(deps, c.UpdateService, h.update_service),
        "delete_service": _bind(deps, c.DeleteService, h.delete_service),
        "set_env_var": _bind(deps, c.SetEnvVar, h.set_env_var),
        "remove_env_var": _bind(deps, c.RemoveEnvVar, h.remove_env_var),
        "create_deployment": _bind(deps, c.CreateDeployment, h.create_deployment),
        "rollback": _bind(deps, c.Rollback, h.rollback),
        "cancel_deployment": _bind(deps, c.CancelDeployment, h.cancel_deployment),
        "report_step": _bind(deps, c.ReportStep, h.report_step),
        "finish_deployment": _bind(deps, c.FinishDeployment, h.finish_deployment),
        "agent_start": _bind(deps, c.AgentStart, h.agent_start),
        "agent_finish": _bind(deps, c.AgentFinish, h.agent_finish),
        "service_env": _bind(deps, c.ServiceEnv, h.service_env),
    }
