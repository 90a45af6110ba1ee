"""What webhook receivers are told of infrastructure resources (`infrastructure.*`) and
drift (`drift.*`): what was declared, what the provider did with it, what scans found.
Never a credential."""

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


def drift_payload(recorded: Recorded[Event]) -> tuple[str, dict[str, Any]] | None:
    event, aggregate_id = recorded.event, recorded.meta.aggregate_id
    match event:
        case drift.ScanRequested():
            return "drift.scan_requested", {
                "scan_id": aggregate_id,
                "environment_id": event.environment_id,
                "initiated_by": event.initiated_by,
                "scheduled": event.scheduled,
                "remediate": event.remediate,
            }
        case drift.ScanCompleted():
            return "drift.scan_completed", {
                "scan_id": aggregate_id,
                "drifts_detected": event.drifts_detected,
                "critical": event.critical,
                "new": event.new,
                "reopened": event.reopened,
                "changed": event.changed,
                "resolved": event.resolved,
                "could_not_read": event.could_not_read,
                "resources": event.resources,
                "services": event.services,
            }
        case drift.ScanFailed():
            return "drift.scan_failed", {"scan_id": aggregate_id, "reason": event.reason}
        case drift.ScanSkipped():
            return "drift.scan_skipped", {"scan_id": aggregate_id, "reason": event.reason}
        case drift.DriftDetected():
            return "drift.detected", {
                "finding_id": aggregate_id,
                "environment_id": event.environment_id,
                "scan_id": event.scan_id,
                "resource_type": event.resource_type,
                "resource_id": event.resource_id,
                "address": event.address,
                "kind": event.kind,
                "severity": event.severity,
                "change": event.change,
                "differences": [
                    {"pointer": d.pointer, "expected": d.expected, "actual": d.actual}
                    for d in event.differences
                ],
            }
        case drift.DriftResolved():
            return "drift.resolved", {"finding_id": aggregate_id, "scan_id": event.scan_id}
    return None
