"""Pipelines: named steps run after a service's build.

Pure: decide returns events, evolve folds them; no I/O, clock or ids.
"""

from __future__ import annotations

import msgspec

from libs.errors import Conflict, NotFound, ValidationFailed
from libs.events import Event
from libs.principal import Principal, require
from services.deploy.decider.services import ServiceState, require_service
from services.deploy.events import (
    PipelineCreated,
    PipelineDeleted,
    PipelineStepSpec,
    PipelineUpdated,
)


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
