"""The events of the drift context: infrastructure resources (`resource.<id>`), each
provisioned, changed and deleted by a job. Scans and findings come next (issue 12).

No event holds a credential: a job opens the environment's sealed credentials
from the deploy context's events when it needs them.
"""

from __future__ import annotations

from typing import Any

from libs.events import Event, EventCodec
from libs.eventstore import StreamSpec

STREAM = StreamSpec(context="drift", aggregates=("resource",))


class ResourceRequested(Event, frozen=True, kw_only=True, tag="infrastructure.resource_requested"):
    resource_id: str
    organization_id: str
    environment_id: str
    # server | security_group | volume | bucket ("type" is every event's tag field)
    resource_type: str
    provider: str  # aws
    region: str
    specs: dict[str, Any]
    tags: dict[str, str] = {}


class ResourceProvisioned(
    Event, frozen=True, kw_only=True, tag="infrastructure.resource_provisioned"
):
    provider_id: str  # sg-..., i-..., vol-..., the bucket's name
    # What the provider reported right after (drift compares against the desired spec).
    attributes: dict[str, Any] = {}


class ResourceChangeRequested(
    Event, frozen=True, kw_only=True, tag="infrastructure.resource_change_requested"
):
    specs: dict[str, Any] | None = None
    tags: dict[str, str] | None = None


class ResourceUpdated(Event, frozen=True, kw_only=True, tag="infrastructure.resource_updated"):
    attributes: dict[str, Any] = {}


class ResourceFailed(Event, frozen=True, kw_only=True, tag="infrastructure.resource_failed"):
    operation: str  # provision | update | delete
    error: str


class ResourceDeletionRequested(
    Event, frozen=True, kw_only=True, tag="infrastructure.resource_deletion_requested"
):
    pass


class ResourceDeleted(Event, frozen=True, kw_only=True, tag="infrastructure.resource_deleted"):
    pass


ResourceEvent = (
    ResourceRequested
    | ResourceProvisioned
    | ResourceChangeRequested
    | ResourceUpdated
    | ResourceFailed
    | ResourceDeletionRequested
    | ResourceDeleted
)

CODECS: dict[str, EventCodec[Event]] = {"resource": EventCodec(ResourceEvent)}
