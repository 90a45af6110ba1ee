"""Deployments: the state machine from created to a terminal status.

Pure: decide returns events, evolve folds them; no I/O, clock or ids.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.errors import Conflict, NotFound
from libs.events import Event
from libs.principal import Principal, require
from services.deploy import status as _STATUS
from services.deploy.decider.environments import EnvironmentState
from services.deploy.decider.services import ServiceState, require_service
from services.deploy.events import (
    DeploymentCancelled,
    DeploymentCreated,
    DeploymentDispatched,
    DeploymentFailed,
    DeploymentQueued,
    DeploymentRolledBack,
    DeploymentStarted,
    DeploymentSucceeded,
    StepFinished,
    StepStarted,
)
from services.deploy.status import status_after

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
