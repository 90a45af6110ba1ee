"""Projects and their slugs (unique per organization).

Pure: decide returns events, evolve folds them; no I/O, clock or ids.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.errors import Conflict, NotFound
from libs.events import Event
from libs.principal import Principal, require
from services.deploy.events import (
    ProjectCreated,
    ProjectDeleted,
    ProjectServiceAdded,
    ProjectSlugClaimed,
    ProjectUpdated,
)


class ProjectState(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str | None = None
    organization_id: str | None = None
    deleted: bool = False
    lists_services: bool = False
    services: tuple[str, ...] = ()  # every service ever begun in it, deleted or not

    @property
    def exists(self) -> bool:
        return self.project_id is not None and not self.deleted


def evolve_project(state: ProjectState, event: Event) -> ProjectState:
    match event:
        case ProjectCreated():
            return ProjectState(
                project_id=event.project_id,
                organization_id=event.organization_id,
                lists_services=event.lists_services,
            )
        case ProjectServiceAdded():
            return msgspec.structs.replace(state, services=(*state.services, event.service_id))
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


def decide_add_service(
    state: ProjectState, actor: Principal, organization_id: str, service_id: str
) -> list[Event]:
    require_project(state, actor, "write")
    if state.organization_id != organization_id:
        raise NotFound("project not found", {"field": "$.project_id"})
    if service_id in state.services:
        return []
    return [ProjectServiceAdded(service_id=service_id)]


def decide_delete_project(state: ProjectState, actor: Principal, live_services: int) -> list[Event]:
    """`live_services`: how many of `state.services` exist and are not deleted."""
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
