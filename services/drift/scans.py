"""Scans and their findings, given their events. Pure.

A scan is requested, then completes (with its counts) or fails as a whole. A
finding (one per environment and fingerprint) is detected — new, reopened
after it was resolved, or changed when its differences moved — and resolved
when a scan that could read its resource no longer finds it. The same drift
seen again with the same differences is no event: the scan's `seen` list moves
its `last_seen`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from libs.errors import NotFound
from libs.events import Event
from libs.principal import Principal, require
from services.drift.events import (
    DifferenceRecord,
    DriftDetected,
    DriftResolved,
    FindingAcknowledged,
    FindingIgnored,
    FindingReopened,
    RemediationRequested,
    ScanCompleted,
    ScanFailed,
    ScanRequested,
    ScanSkipped,
)
from services.drift.findings import ACKNOWLEDGED, IGNORED, OPEN, RESOLVED, Finding

REQUESTED, COMPLETED, FAILED, SKIPPED = "running", "completed", "failed", "skipped"


class ScanState(msgspec.Struct, frozen=True, kw_only=True):
    scan_id: str | None = None
    organization_id: str | None = None
    environment_id: str | None = None
    status: str = REQUESTED
    remediate: bool = False


def evolve_scan(state: ScanState, event: Event) -> ScanState:
    match event:
        case ScanRequested():
            return ScanState(
                scan_id=event.scan_id,
                organization_id=event.organization_id,
                environment_id=event.environment_id,
                remediate=event.remediate,
            )
        case ScanCompleted():
            return msgspec.structs.replace(state, status=COMPLETED)
        case ScanFailed():
            return msgspec.structs.replace(state, status=FAILED)
        case ScanSkipped():
            return msgspec.structs.replace(state, status=SKIPPED)
    return state


def decide_scan(
    state: ScanState, actor: Principal, requested: ScanRequested, *, environment_org: str | None
) -> list[Event]:
    require(actor, "write", requested.organization_id)
    if environment_org != requested.organization_id:
        raise NotFound("environment not found")
    return [] if state.scan_id is not None else [requested]


def decide_outcome(
    state: ScanState, outcome: ScanCompleted | ScanFailed | ScanSkipped
) -> list[Event]:
    return [outcome] if state.status == REQUESTED else []


class FindingState(msgspec.Struct, frozen=True, kw_only=True):
    finding_id: str | None = None
    state: str | None = None  # open | acknowledged | ignored | resolved
    digest: str = ""
    address: str = ""
    organization_id: str | None = None
    environment_id: str | None = None
    resource_type: str = ""
    resource_id: str | None = None
    kind: str = ""
    differences: list[dict[str, Any]] = []
    until: datetime | None = None  # an ignore's end
    remediated_at: datetime | None = None  # the last remediation asked for


def evolve_finding(state: FindingState, event: Event) -> FindingState:
    replace = msgspec.structs.replace
    match event:
        case DriftDetected():
            # Acknowledged or ignored stays so when the drift changes; reopened is open.
            kept = state.state if state.state not in (None, RESOLVED) else OPEN
            return FindingState(
                finding_id=event.finding_id,
                state=kept,
                digest=event.digest,
                address=event.address,
                organization_id=event.organization_id,
                environment_id=event.environment_id,
                resource_type=event.resource_type,
                resource_id=event.resource_id,
                kind=event.kind,
                differences=msgspec.to_builtins(event.differences),
                until=state.until if kept == IGNORED else None,
                remediated_at=state.remediated_at,
            )
        case DriftResolved():
            return replace(state, state=RESOLVED, until=None)
        case FindingAcknowledged():
            return replace(state, state=ACKNOWLEDGED, until=None)
        case FindingIgnored():
            return replace(state, state=IGNORED, until=event.until)
        case FindingReopened():
            return replace(state, state=OPEN, until=None)
        case RemediationRequested():
            return replace(state, remediated_at=event.requested_at)
    return state


def finding_id(environment_id: str, fingerprint: str) -> str:
    """One finding per environment and fingerprint (an id safe as a subject token)."""
    return "fnd_" + hashlib.sha256(f"{environment_id}\n{fingerprint}".encode()).hexdigest()[:24]


def decide_seen(
    state: FindingState,
    finding: Finding,
    *,
    organization_id: str,
    environment_id: str,
    scan_id: str,
    resource_id: str | None,
    now: datetime | None = None,
) -> list[Event]:
    """What seeing `finding` in a scan records: new, reopened, changed, or nothing. An
    ignore that has expired by `now` ends: the finding is open again."""
    expired = (
        state.state == IGNORED
        and state.until is not None
        and now is not None
        and state.until <= now
    )
    if state.state is None:
        change = "new"
    elif state.state == RESOLVED:
        change = "reopened"
    elif state.digest != finding.digest:
        change = "changed"
    elif expired:
        return [FindingReopened(by="system:drift")]
    else:
        return []
    reopened: list[Event] = [FindingReopened(by="system:drift")] if expired else []
    return reopened + _detected(
        finding, organization_id, environment_id, scan_id, resource_id, change
    )


def _detected(
    finding: Finding,
    organization_id: str,
    environment_id: str,
    scan_id: str,
    resource_id: str | None,
    change: str,
) -> list[Event]:
    return [
        DriftDetected(
            finding_id=finding_id(environment_id, finding.fingerprint),
            organization_id=organization_id,
            environment_id=environment_id,
            scan_id=scan_id,
            fingerprint=finding.fingerprint,
            resource_type=finding.resource_type,
            resource_id=resource_id,
            address=finding.address,
            kind=finding.kind,
            severity=finding.severity,
            differences=[
                DifferenceRecord(pointer=d.pointer, expected=d.expected, actual=d.actual)
                for d in finding.differences
            ],
            digest=finding.digest,
            change=change,
        )
    ]


def decide_resolved(state: FindingState, *, scan_id: str) -> list[Event]:
    if state.state is None or state.state == RESOLVED:
        return []
    return [DriftResolved(scan_id=scan_id)]
