"""Services: what is deployed, its env vars and controls.

Pure: decide returns events, evolve folds them; no I/O, clock or ids.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from libs.errors import Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal, require
from services.deploy.decider.projects import ProjectState, require_project
from services.deploy.events import (
    EnvVarRemoved,
    EnvVarSet,
    InstanceControlRequested,
    ServiceControlRequested,
    ServiceCreated,
    ServiceDeleted,
    ServiceUpdated,
)

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_KEYS = frozenset({"PORT", "DEPLOYFORGE_DEPLOYMENT_TOKEN", "DEPLOYFORGE_DEPLOYMENT_ID"})


class EnvVar(msgspec.Struct, frozen=True, kw_only=True):
    secret: bool
    value: str | None = None
    value_sealed: str | None = None


class ServiceState(msgspec.Struct, frozen=True, kw_only=True):
    service_id: str | None = None
    organization_id: str | None = None
    project_id: str | None = None
    branch: str = "main"
    # What an agent runs (agent_start reads it here, not from the read model).
    repository_url: str = ""
    build_command: list[str] = []
    run_command: list[str] = []
    port: int | None = None
    health_check_path: str = "/"
    replicas: int = 1
    env: dict[str, EnvVar] = {}
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.service_id is not None and not self.deleted


_RUNNABLE = frozenset(
    {"branch", "repository_url", "build_command", "run_command", "port"}
    | {"health_check_path", "replicas"}
)


def evolve_service(state: ServiceState, event: Event) -> ServiceState:
    match event:
        case ServiceCreated():
            return ServiceState(
                service_id=event.service_id,
                organization_id=event.organization_id,
                project_id=event.project_id,
                branch=event.branch,
                repository_url=event.repository_url,
                build_command=event.build_command,
                run_command=event.run_command,
                port=event.port,
                health_check_path=event.health_check_path,
                replicas=event.replicas,
            )
        case ServiceUpdated():
            known = {k: v for k, v in event.changes.items() if k in _RUNNABLE}
            return msgspec.structs.replace(state, **known)
        case EnvVarSet():
            var = EnvVar(secret=event.secret, value=event.value, value_sealed=event.value_sealed)
            return msgspec.structs.replace(state, env={**state.env, event.key: var})
        case EnvVarRemoved():
            return msgspec.structs.replace(
                state, env={k: v for k, v in state.env.items() if k != event.key}
            )
        case ServiceDeleted():
            return msgspec.structs.replace(state, deleted=True)
    return state


def decide_create_service(
    state: ServiceState, project: ProjectState, actor: Principal, created: ServiceCreated
) -> list[Event]:
    require_project(project, actor, "write")
    if project.organization_id != created.organization_id:
        raise NotFound("project not found", {"field": "$.project_id"})
    if state.service_id is not None:
        raise Conflict("service already exists")
    return [created]


def require_service(state: ServiceState, actor: Principal, scope: str) -> None:
    if not state.exists:
        raise NotFound("service not found")
    # A service token acts on its own service only, a deployment token on its own
    # deployment only (never on services); checked first, so that another service's
    # existence is not revealed by a 403.
    if actor.deployment_id is not None:
        raise NotFound("service not found")
    if actor.service_id is not None and actor.service_id != state.service_id:
        raise NotFound("service not found")
    require(actor, scope, state.organization_id)


def decide_update_service(
    state: ServiceState, actor: Principal, changes: dict[str, Any]
) -> list[Event]:
    require_service(state, actor, "write")
    return [ServiceUpdated(changes=changes)] if changes else []


def decide_set_env_var(
    state: ServiceState,
    actor: Principal,
    *,
    key: str,
    value: str | None,
    value_sealed: str | None,
    secret: bool,
) -> list[Event]:
    require_service(state, actor, "write")
    if not ENV_KEY.fullmatch(key):
        raise ValidationFailed("an environment variable name is letters, digits and _", "$.key")
    if key in RESERVED_KEYS or key.startswith("DEPLOYFORGE_"):
        raise ValidationFailed(f"{key} is set by DeployForge itself", "$.key")
    return [EnvVarSet(key=key, secret=secret, value=value, value_sealed=value_sealed)]


def decide_remove_env_var(state: ServiceState, actor: Principal, key: str) -> list[Event]:
    require_service(state, actor, "write")
    if key not in state.env:
        raise NotFound("environment variable not found", {"field": "key"})
    return [EnvVarRemoved(key=key)]


def decide_control(
    state: ServiceState, actor: Principal, *, action: str, environment_id: str | None
) -> list[Event]:
    require_service(state, actor, "deploy")
    return [ServiceControlRequested(action=action, environment_id=environment_id)]


def decide_control_instance(
    state: ServiceState,
    actor: Principal,
    *,
    instance_id: str,
    environment_id: str,
    action: str,
) -> list[Event]:
    """One instance of the service. Deleting a service stops nothing, so the
    instances of a deleted one may still be stopped and removed."""
    if state.deleted and action in ("stop", "remove"):
        state = msgspec.structs.replace(state, deleted=False)
    require_service(state, actor, "deploy")
    return [
        InstanceControlRequested(
            instance_id=instance_id, environment_id=environment_id, action=action
        )
    ]


def decide_delete_service(
    state: ServiceState, actor: Principal, active_deployments: int
) -> list[Event]:
    require_service(state, actor, "admin")
    if active_deployments:
        raise Conflict("the service has deployments in progress; cancel them first")
    return [ServiceDeleted()]
