"""One function per deploy command: load the aggregates, decide, append.

Split along its seams: `resources` (environments, projects, services and their
env vars), `deployments` (create, roll back, cancel, queue), `agent_protocol`
(what the agent asks and reports), over `aggregates` (what they all share).
Every name is importable from here, as it was from the one module.
"""

from services.deploy.handlers.agent_protocol import (
    agent_finish,
    agent_start,
    fail_lost,
    service_env,
)
from services.deploy.handlers.aggregates import (
    DEPLOYMENTS,
    DISPATCH,
    ENVIRONMENTS,
    PIPELINES,
    PROJECTS,
    SECRET_ENV,
    SERVICES,
    SLUGS,
    DeployDeps,
    _position,
    _update,
)
from services.deploy.handlers.deployments import (
    _create,
    cancel_deployment,
    create_deployment,
    finish_deployment,
    report_step,
    rollback,
)
from services.deploy.handlers.resources import (
    CREDENTIALS,
    _argv,
    control_instance,
    control_service,
    create_environment,
    create_project,
    create_service,
    delete_environment,
    delete_project,
    delete_service,
    remove_env_var,
    set_env_var,
    update_environment,
    update_project,
    update_service,
)

# The underscored helpers are here for pipelines.py, which builds its commands on them.
__all__ = [
    "CREDENTIALS",
    "DEPLOYMENTS",
    "DISPATCH",
    "ENVIRONMENTS",
    "PIPELINES",
    "PROJECTS",
    "SECRET_ENV",
    "SERVICES",
    "SLUGS",
    "DeployDeps",
    "_argv",
    "_create",
    "_position",
    "_update",
    "agent_finish",
    "agent_start",
    "cancel_deployment",
    "control_instance",
    "control_service",
    "create_deployment",
    "create_environment",
    "create_project",
    "create_service",
    "delete_environment",
    "delete_project",
    "delete_service",
    "fail_lost",
    "finish_deployment",
    "remove_env_var",
    "report_step",
    "rollback",
    "service_env",
    "set_env_var",
    "update_environment",
    "update_project",
    "update_service",
]
