"""Infrastructure resources, given their events: requested, provisioned by a job,
changed (by a job), deleted (by a job). Pure.

Statuses: `provisioning` -> `active`; `updating` -> `active`; `deleting` ->
`deleted`; a job that fails leaves `failed` with the operation and error (a
PATCH or DELETE of a failed resource tries again). One job at a time: a change
or deletion while one runs is a 409.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.errors import Conflict, NotFound
from libs.events import Event
from libs.principal import Principal, require
from services.drift.events import (
    ResourceChangeRequested,
    ResourceDeleted,
    ResourceDeletionRequested,
    ResourceFailed,
    ResourceProvisioned,
    ResourceReprovisionRequested,
    ResourceRequested,
    ResourceUpdated,
)

PROVISIONING, ACTIVE, UPDATING, DELETING, DELETED, FAILED = (
    "provisioning", "active", "updating", "deleting", "deleted", "failed",
)  # fmt: skip
BUSY = (PROVISIONING, UPDATING, DELETING)


class ResourceState(msgspec.Struct, frozen=True, kw_only=True):
    resource_id: str | None = None
    organization_id: str | None = None
    environment_id: str | None = None
    type: str = ""
    provider: str = ""
    region: str = ""
    specs: dict[str, Any] = {}
    tags: dict[str, str] = {}
    status: str = PROVISIONING
    provider_id: str | None = None
    # What the job in flight (or the failed one) was doing.
    operation: str | None = None
    # Why the change in flight was asked for: None (a person's PATCH) | remediate | accept.
    reason: str | None = None

    @property
    def exists(self) -> bool:
        return self.resource_id is not None and self.status != DELETED


def evolve_resource(state: ResourceState, event: Event) -> ResourceState:
    replace = msgspec.structs.replace
    match event:
        case ResourceRequested():
            return ResourceState(
                resource_id=event.resource_id,
                organization_id=event.organization_id,
                environment_id=event.environment_id,
                type=event.resource_type,
                provider=event.provider,
                region=event.region,
                specs=event.specs,
                tags=event.tags,
                operation="provision",
            )
        case ResourceProvisioned():
            return replace(
                state, status=ACTIVE, provider_id=event.provider_id, operation=None, reason=None
            )
        case ResourceChangeRequested():
            return replace(
                state,
                status=UPDATING,
                specs=state.specs if event.specs is None else event.specs,
                tags=state.tags if event.tags is None else event.tags,
                operation="update",
                reason=event.reason,
            )
        case ResourceReprovisionRequested():
            return replace(state, status=PROVISIONING, operation="provision", reason="remediate")
        case ResourceUpdated():
            return replace(state, status=ACTIVE, operation=None, reason=None)
        case ResourceFailed():
            return replace(state, status=FAILED, operation=event.operation)
        case ResourceDeletionRequested():
            return replace(state, status=DELETING, operation="delete")
        case ResourceDeleted():
            return replace(state, status=DELETED, operation=None)
    return state


def require_resource(state: ResourceState, actor: Principal, scope: str) -> None:
    if not state.exists:
        raise NotFound("resource not found")
    require(actor, scope, state.organization_id)


def decide_request(
    state: ResourceState,
    actor: Principal,
    requested: ResourceRequested,
    *,
    environment_org: str | None,
) -> list[Event]:
    require(actor, "write", requested.organization_id)
    if environment_org != requested.organization_id:
        raise NotFound("environment not found", {"field": "$.environment_id"})
    if state.resource_id is not None:
        raise Conflict("resource already exists")
    return [requested]


def decide_change(
    state: ResourceState,
    actor: Principal,
    *,
    specs: dict[str, Any] | None,
    tags: dict[str, str] | None,
) -> list[Event]:
    require_resource(state, actor, "write")
    if state.status in BUSY:
        raise Conflict(f"the resource is {state.status}: wait for that job to end")
    if state.status == FAILED and state.operation == "provision":
        raise Conflict("the resource was never provisioned: delete it and request it again")
    if (specs is None or specs == state.specs) and (tags is None or tags == state.tags):
        return []
    return [ResourceChangeRequested(specs=specs, tags=tags)]


def decide_delete(state: ResourceState, actor: Principal) -> list[Event]:
    require_resource(state, actor, "write")
    if state.status == DELETING:
        return []
    if state.status in (PROVISIONING, UPDATING):
        raise Conflict(f"the resource is {state.status}: wait for that job to end")
    return [ResourceDeletionRequested()]


# --- the job's outcomes (no actor: the system records them) ------------------------------


def decide_provisioned(
    state: ResourceState, provider_id: str, attributes: dict[str, Any]
) -> list[Event]:
    if state.status != PROVISIONING:
        return []  # recorded already
    return [ResourceProvisioned(provider_id=provider_id, attributes=attributes)]


def decide_updated(state: ResourceState, attributes: dict[str, Any]) -> list[Event]:
    return [ResourceUpdated(attributes=attributes)] if state.status == UPDATING else []


def decide_deleted(state: ResourceState) -> list[Event]:
    return [ResourceDeleted()] if state.status == DELETING else []


def decide_failed(state: ResourceState, operation: str, error: str) -> list[Event]:
    if state.status not in BUSY:
        return []
    return [ResourceFailed(operation=operation, error=error[:1000])]
