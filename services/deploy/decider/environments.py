"""Environments: where deployments go, their settings and status.

Pure: decide returns events, evolve folds them; no I/O, clock or ids.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.errors import Conflict, NotFound
from libs.events import Event
from libs.principal import Principal, require
from services.deploy.events import (
    EnvironmentCreated,
    EnvironmentDeleted,
    EnvironmentStatusChanged,
    EnvironmentUpdated,
)


class EnvironmentState(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str | None = None
    organization_id: str | None = None
    status: str = "active"
    deleted: bool = False
    region: str | None = None
    # The cloud credentials, sealed (drift reads and provisions with them).
    credentials_sealed: str | None = None

    @property
    def exists(self) -> bool:
        return self.environment_id is not None and not self.deleted


def evolve_environment(state: EnvironmentState, event: Event) -> EnvironmentState:
    match event:
        case EnvironmentCreated():
            return EnvironmentState(
                environment_id=event.environment_id,
                organization_id=event.organization_id,
                region=event.region,
                credentials_sealed=event.credentials_sealed,
            )
        case EnvironmentUpdated():
            return msgspec.structs.replace(
                state,
                region=event.changes.get("region", state.region),
                credentials_sealed=event.credentials_sealed or state.credentials_sealed,
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
