"""The deploy service's NATS micro endpoints: decode, call the handler, encode."""

from __future__ import annotations

from typing import Any

from libs.messaging import Endpoint, bind
from services.deploy import commands as c
from services.deploy import handlers as h
from services.deploy import pipelines as p
from services.deploy.handlers import DeployDeps

SERVICE = "deploy"


def endpoints(deps: DeployDeps) -> dict[str, Endpoint[Any]]:
    return {
        "create_environment": bind(deps, c.CreateEnvironment, h.create_environment),
        "update_environment": bind(deps, c.UpdateEnvironment, h.update_environment),
        "delete_environment": bind(deps, c.DeleteEnvironment, h.delete_environment),
        "create_project": bind(deps, c.CreateProject, h.create_project),
        "update_project": bind(deps, c.UpdateProject, h.update_project),
        "delete_project": bind(deps, c.DeleteProject, h.delete_project),
        "create_service": bind(deps, c.CreateService, h.create_service),
        "update_service": bind(deps, c.UpdateService, h.update_service),
        "delete_service": bind(deps, c.DeleteService, h.delete_service),
        "set_env_var": bind(deps, c.SetEnvVar, h.set_env_var),
        "control_service": bind(deps, c.ControlService, h.control_service),
        "control_instance": bind(deps, c.ControlInstance, h.control_instance),
        "create_pipeline": bind(deps, c.CreatePipeline, p.create_pipeline),
        "update_pipeline": bind(deps, c.UpdatePipeline, p.update_pipeline),
        "delete_pipeline": bind(deps, c.DeletePipeline, p.delete_pipeline),
        "run_pipeline": bind(deps, c.RunPipeline, p.run_pipeline),
        "remove_env_var": bind(deps, c.RemoveEnvVar, h.remove_env_var),
        "create_deployment": bind(deps, c.CreateDeployment, h.create_deployment),
        "rollback": bind(deps, c.Rollback, h.rollback),
        "cancel_deployment": bind(deps, c.CancelDeployment, h.cancel_deployment),
        "report_step": bind(deps, c.ReportStep, h.report_step),
        "finish_deployment": bind(deps, c.FinishDeployment, h.finish_deployment),
        "agent_start": bind(deps, c.AgentStart, h.agent_start),
        "agent_finish": bind(deps, c.AgentFinish, h.agent_finish),
        "service_env": bind(deps, c.ServiceEnv, h.service_env),
    }
