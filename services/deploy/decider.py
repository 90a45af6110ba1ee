"""The deploy context's rules as pure functions: decide returns events, evolve folds them.

No I/O, no clock, no ids generated here: handlers pass them in.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from libs.errors import Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal, require
from services.deploy import status as _STATUS
from services.deploy.events import (
    DeploymentCancelled,
    DeploymentCreated,
    DeploymentDispatched,
    DeploymentFailed,
    DeploymentQueued,
    DeploymentRolledBack,
    DeploymentStarted,
    DeploymentSucceeded,
    EnvironmentCreated,
    EnvironmentDeleted,
    EnvironmentStatusChanged,
    EnvironmentUpdated,
    EnvVarRemoved,
    EnvVarSet,
    InstanceControlRequested,
    PipelineCreated,
    PipelineDeleted,
    PipelineStepSpec,
    PipelineUpdated,
    ProjectCreated,
    ProjectDeleted,
    ProjectSlugClaimed,
    ProjectUpdated,
    ServiceControlRequested,
    ServiceCreated,
    ServiceDeleted,
    ServiceUpdated,
    SlotQueued,
    SlotReleased,
    SlotTaken,
    StepFinished,
    StepStarted,
)
from services.deploy.status import status_after

# --- environment --------------------------------------------------------------------------


class EnvironmentState(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str | None = None
    organization_id: str | None = None
    status: str = "active"
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.environment_id is not None and not self.deleted


def evolve_environment(state: EnvironmentState, event: Event) -> EnvironmentState:
    match event:
        case EnvironmentCreated():
            return EnvironmentState(
                environment_id=event.environment_id, organization_id=event.organization_id
            )
        case EnvironmentStatusChanged():
            return msgspec.structs.replace(state, status=event.status)
        case EnvironmentDeleted():
            return msgspec.structs.replace(state, deleted=True)
    return state


def decide_create_environment(
    state: EnvironmentState, actor: Principal, created: EnvironmentCreated
) -> list[Event]:
    require(actor, "write", created.organization_id)
    if state.environment_id is not None:
        raise Conflict("environment already exists")
    return [created]


def _require_environment(state: EnvironmentState, actor: Principal, scope: str) -> None:
    if not state.exists:
        raise NotFound("environment not found")
    require(actor, scope, state.organization_id)


def decide_update_environment(
    state: EnvironmentState, actor: Principal, changes: dict[str, Any], sealed: str | None
) -> list[Event]:
    _require_environment(state, actor, "write")
    events: list[Event] = []
    changes = dict(changes)
    status = changes.pop("status", None)
    if changes or sealed is not None:
        events.append(EnvironmentUpdated(changes=changes, credentials_sealed=sealed))
    if status is not None and status != state.status:
        events.append(EnvironmentStatusChanged(status=status))
    return events


def decide_delete_environment(state: EnvironmentState, actor: Principal) -> list[Event]:
    _require_environment(state, actor, "admin")
    return [EnvironmentDeleted()]


# --- project ------------------------------------------------------------------------------


class ProjectState(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str | None = None
    organization_id: str | None = None
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.project_id is not None and not self.deleted


def evolve_project(state: ProjectState, event: Event) -> ProjectState:
    match event:
        case ProjectCreated():
            return ProjectState(project_id=event.project_id, organization_id=event.organization_id)
        case ProjectDeleted():
            return msgspec.structs.replace(state, deleted=True)
    return state


def decide_create_project(
    state: ProjectState, actor: Principal, created: ProjectCreated
) -> list[Event]:
    require(actor, "write", created.organization_id)
    if state.project_id is not None:
        raise Conflict("project already exists")
    return [created]


def require_project(state: ProjectState, actor: Principal, scope: str) -> None:
    if not state.exists:
        raise NotFound("project not found", {"field": "$.project_id"})
    require(actor, scope, state.organization_id, field="$.project_id")


def decide_update_project(
    state: ProjectState, actor: Principal, changes: dict[str, Any]
) -> list[Event]:
    require_project(state, actor, "write")
    return [ProjectUpdated(changes=changes)] if changes else []


def decide_delete_project(state: ProjectState, actor: Principal, live_services: int) -> list[Event]:
    require_project(state, actor, "admin")
    if live_services:
        raise Conflict(f"the project still has {live_services} service(s); delete them first")
    return [ProjectDeleted()]


class SlugState(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str | None = None


def evolve_slug(state: SlugState, event: Event) -> SlugState:
    if isinstance(event, ProjectSlugClaimed):
        return SlugState(project_id=event.project_id)
    return state


def decide_claim_slug(state: SlugState, project_id: str) -> list[Event]:
    if state.project_id is not None:
        raise Conflict("a project with this slug already exists", {"field": "$.slug"})
    return [ProjectSlugClaimed(project_id=project_id)]


# --- service ------------------------------------------------------------------------------

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


# --- deployment ---------------------------------------------------------------------------

TERMINAL = _STATUS.TERMINAL
ACTIVE = frozenset({"created", "queued", "dispatched", "initializing", "running"})


class DeploymentState(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str | None = None
    organization_id: str | None = None
    service_id: str | None = None
    environment_id: str | None = None
    ref: str = ""
    strategy: str = ""
    config: dict[str, Any] = {}
    status: str = "created"
    current_step: str | None = None
    release_id: str | None = None
    rollback_of: str | None = None
    replaces: str | None = None
    pipeline_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.service_id}:{self.environment_id}"


def evolve_deployment(state: DeploymentState, event: Event) -> DeploymentState:
    replace = msgspec.structs.replace
    match event:
        case DeploymentCreated():
            return DeploymentState(
                deployment_id=event.deployment_id,
                organization_id=event.organization_id,
                service_id=event.service_id,
                environment_id=event.environment_id,
                ref=event.ref,
                strategy=event.strategy,
                config=event.config,
                rollback_of=event.rollback_of,
                replaces=event.replaces,
                pipeline_id=event.pipeline_id,
            )
        case DeploymentQueued() | DeploymentDispatched() | DeploymentStarted():
            return replace(state, status=status_after(event))
        case StepStarted():
            return replace(state, status=status_after(event), current_step=event.name)
        case StepFinished():
            return replace(state, current_step=None)
        case DeploymentSucceeded():
            return replace(state, status=status_after(event), release_id=event.release_id)
        case DeploymentFailed() | DeploymentCancelled() | DeploymentRolledBack():
            return replace(state, status=status_after(event))
    return state


def decide_create_deployment(
    state: DeploymentState,
    actor: Principal,
    *,
    service: ServiceState,
    environment: EnvironmentState,
    created: DeploymentCreated,
    rollback_target: DeploymentState | None = None,
) -> list[Event]:
    require_service(service, actor, "deploy")
    if not environment.exists or environment.organization_id != service.organization_id:
        raise NotFound("environment not found", {"field": "$.environment_id"})
    if environment.status != "active":
        raise Conflict("the environment is inactive", {"field": "$.environment_id"})
    if state.deployment_id is not None:
        raise Conflict("deployment already exists")
    if rollback_target is not None:
        if (
            rollback_target.deployment_id is None
            or rollback_target.service_id != service.service_id
            or rollback_target.environment_id != environment.environment_id
        ):
            raise NotFound("deployment to roll back to not found", {"field": "$.deployment_id"})
        if rollback_target.release_id is None:
            raise Conflict(
                "only a deployment that succeeded has a release to roll back to",
                {"field": "$.deployment_id"},
            )
    return [created]


def _require_active(state: DeploymentState) -> None:
    if state.deployment_id is None:
        raise NotFound("deployment not found")
    if state.status in TERMINAL:
        raise Conflict(f"the deployment already ended ({state.status})")


def decide_start(state: DeploymentState, agent_id: str) -> list[Event]:
    _require_active(state)
    if state.status != "dispatched":
        raise Conflict(f"the deployment is {state.status}, not waiting for an agent")
    return [DeploymentStarted(agent_id=agent_id)]


def decide_report_step(
    state: DeploymentState,
    actor: Principal | None,
    *,
    name: str,
    state_name: str,
    message: str = "",
    error_message: str = "",
    duration_seconds: float | None = None,
) -> list[Event]:
    """A step report, from the agent or from a deploy script holding the deployment token."""
    _require_reporter(state, actor)
    _require_active(state)
    if state.status in ("created", "queued"):
        raise Conflict(f"the deployment is {state.status}; steps are reported once it runs")
    if state_name in ("pending", "running"):
        if state.current_step == name:
            return []
        return [StepStarted(name=name)]
    outcome = "success" if state_name == "success" else "failure"
    events: list[Event] = []
    if state.current_step != name:
        events.append(StepStarted(name=name))
    events.append(
        StepFinished(
            name=name,
            state=outcome,
            message=message,
            error_message=error_message,
            duration_seconds=duration_seconds,
        )
    )
    return events


def _require_scoped(state: DeploymentState, actor: Principal) -> None:
    """Service and deployment tokens reach their own service or deployment only."""
    if state.deployment_id is None:
        raise NotFound("deployment not found")
    if actor.deployment_id is not None and actor.deployment_id != state.deployment_id:
        raise NotFound("deployment not found")
    if actor.service_id is not None and actor.service_id != state.service_id:
        raise NotFound("deployment not found")
    require(actor, "deploy", state.organization_id)


def _require_reporter(state: DeploymentState, actor: Principal | None) -> None:
    if actor is not None:  # None: the agent, over NATS
        _require_scoped(state, actor)


def decide_finish(
    state: DeploymentState,
    actor: Principal | None,
    *,
    succeeded: bool,
    reason: str = "",
    commit_hash: str | None = None,
    release_id: str | None = None,
    duration_seconds: float | None = None,
    step: str | None = None,
    address: str | None = None,
) -> list[Event]:
    _require_reporter(state, actor)
    _require_active(state)
    if succeeded:
        return [
            DeploymentSucceeded(
                commit_hash=commit_hash,
                release_id=release_id,
                duration_seconds=duration_seconds,
                address=address,
            )
        ]
    return [DeploymentFailed(reason=reason or "failed", step=step)]


def decide_cancel(state: DeploymentState, actor: Principal) -> list[Event]:
    _require_scoped(state, actor)
    _require_active(state)
    return [DeploymentCancelled(reason=f"cancelled by {actor.user_id}")]


def decide_rolled_back(state: DeploymentState, by_deployment_id: str) -> list[Event]:
    if state.status != "succeeded":
        return []
    return [DeploymentRolledBack(by_deployment_id=by_deployment_id)]


# --- pipeline -----------------------------------------------------------------------------


class PipelineState(msgspec.Struct, frozen=True, kw_only=True):
    pipeline_id: str | None = None
    organization_id: str | None = None
    service_id: str | None = None
    name: str = ""
    steps: tuple[PipelineStepSpec, ...] = ()
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.pipeline_id is not None and not self.deleted


def evolve_pipeline(state: PipelineState, event: Event) -> PipelineState:
    match event:
        case PipelineCreated():
            return PipelineState(
                pipeline_id=event.pipeline_id,
                organization_id=event.organization_id,
                service_id=event.service_id,
                name=event.name,
                steps=tuple(event.steps),
            )
        case PipelineUpdated():
            return msgspec.structs.replace(
                state,
                name=state.name if event.name is None else event.name,
                steps=state.steps if event.steps is None else tuple(event.steps),
            )
        case PipelineDeleted():
            return msgspec.structs.replace(state, deleted=True)
    return state


def decide_create_pipeline(
    state: PipelineState, service: ServiceState, actor: Principal, created: PipelineCreated
) -> list[Event]:
    require_service(service, actor, "write")
    if state.pipeline_id is not None:
        raise Conflict("pipeline already exists")
    _check_steps(created.steps)
    return [created]


def _check_steps(steps: list[PipelineStepSpec]) -> None:
    names = [step.name for step in steps]
    if len(set(names)) != len(names):
        raise ValidationFailed("step names must be unique", "$.steps")
    reserved = {"fetch", "build", "start", "health_check", "switch", "cleanup"} & set(names)
    if reserved:
        raise ValidationFailed(f"{', '.join(sorted(reserved))}: the agent's own steps", "$.steps")


def require_pipeline(state: PipelineState, actor: Principal, scope: str) -> None:
    if not state.exists or actor.deployment_id is not None:
        raise NotFound("pipeline not found")
    require(actor, scope, state.organization_id)
    if actor.service_id is not None and actor.service_id != state.service_id:
        raise NotFound("pipeline not found")


def decide_update_pipeline(
    state: PipelineState,
    actor: Principal,
    *,
    name: str | None,
    steps: list[PipelineStepSpec] | None,
) -> list[Event]:
    """Rename, or replace the steps; runs that an agent starts afterwards use the change."""
    require_pipeline(state, actor, "write")
    if steps is not None:
        _check_steps(steps)
    new_name = None if name is None or name == state.name else name
    new_steps = None if steps is None or tuple(steps) == state.steps else steps
    if new_name is None and new_steps is None:
        return []
    return [PipelineUpdated(name=new_name, steps=new_steps)]


def decide_delete_pipeline(state: PipelineState, actor: Principal) -> list[Event]:
    require_pipeline(state, actor, "write")
    return [PipelineDeleted()]


# --- dispatch: the organization's queue ---------------------------------------------------


class DispatchState(msgspec.Struct, frozen=True, kw_only=True):
    running: dict[str, str] = {}  # deployment id -> "<service>:<environment>"
    queue: tuple[tuple[str, str], ...] = ()  # (deployment id, key), in arrival order


def evolve_dispatch(state: DispatchState, event: Event) -> DispatchState:
    match event:
        case SlotQueued():
            return msgspec.structs.replace(
                state, queue=(*state.queue, (event.deployment_id, event.key))
            )
        case SlotTaken():
            return DispatchState(
                running={**state.running, event.deployment_id: event.key},
                queue=tuple(q for q in state.queue if q[0] != event.deployment_id),
            )
        case SlotReleased():
            return DispatchState(
                running={k: v for k, v in state.running.items() if k != event.deployment_id},
                queue=tuple(q for q in state.queue if q[0] != event.deployment_id),
            )
    return state


def _dispatchable(state: DispatchState, limit: int) -> list[Event]:
    """Start queued deployments in arrival order while slots allow; one that waits
    for its service and environment does not hold up the others."""
    running = dict(state.running)
    events: list[Event] = []
    for deployment_id, key in state.queue:
        if len(running) >= limit:
            break
        if key in running.values():
            continue
        running[deployment_id] = key
        events.append(SlotTaken(deployment_id=deployment_id, key=key))
    return events


def decide_enqueue(
    state: DispatchState, *, deployment_id: str, key: str, limit: int
) -> list[Event]:
    if deployment_id in state.running or any(q[0] == deployment_id for q in state.queue):
        return []
    queued = evolve_dispatch(state, SlotQueued(deployment_id=deployment_id, key=key))
    return [SlotQueued(deployment_id=deployment_id, key=key), *_dispatchable(queued, limit)]


def decide_release(state: DispatchState, *, deployment_id: str, limit: int) -> list[Event]:
    if deployment_id not in state.running and all(q[0] != deployment_id for q in state.queue):
        return []
    released = evolve_dispatch(state, SlotReleased(deployment_id=deployment_id))
    return [SlotReleased(deployment_id=deployment_id), *_dispatchable(released, limit)]


def queue_positions(state: DispatchState) -> dict[str, int]:
    """Each waiting deployment's place in the queue, from 1."""
    return {deployment_id: n for n, (deployment_id, _) in enumerate(state.queue, start=1)}
