"""What webhook receivers are told of infrastructure resources (`infrastructure.*`):
what was declared and what the provider did with it. Never a credential."""

from __future__ import annotations

from typing import Any

from libs.events import Event, Recorded
from services.drift import events as drift


def infrastructure_payload(recorded: Recorded[Event]) -> tuple[str, dict[str, Any]] | None:
    event, resource_id = recorded.event, recorded.meta.aggregate_id
    match event:
        case drift.ResourceRequested():
            return "infrastructure.resource_requested", {
                "resource_id": resource_id,
                "environment_id": event.environment_id,
                "type": event.resource_type,
                "provider": event.provider,
                "region": event.region,
                "specs": event.specs,
                "tags": event.tags,
            }
        case drift.ResourceProvisioned():
            return "infrastructure.resource_provisioned", {
                "resource_id": resource_id,
                "provider_id": event.provider_id,
            }
        case drift.ResourceUpdated():
            return "infrastructure.resource_updated", {"resource_id": resource_id}
        case drift.ResourceFailed():
            return "infrastructure.resource_failed", {
                "resource_id": resource_id,
                "operation": event.operation,
                "error": event.error,
            }
        case drift.ResourceDeleted():
            return "infrastructure.resource_deleted", {"resource_id": resource_id}
    return None
