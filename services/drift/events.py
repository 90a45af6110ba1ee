"""The events of the drift context: infrastructure resources (`resource.<id>`), each
provisioned, changed and deleted by a job; scans (`scan.<id>`) and what they find
(`finding.<id>`: one per environment and fingerprint, across scans).

No event holds a credential: a job opens the environment's sealed credentials
from the deploy context's events when it needs them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from libs.events import Event, EventCodec
from libs.eventstore import StreamSpec

STREAM = StreamSpec(
    context="drift", aggregates=("resource", "scan", "finding", "ignore_rule", "schedule")
)


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
    # Set when a drift finding asked for it: remediated (the spec re-applied) or accepted
    # (the spec made what the provider has).
    finding_id: str | None = None
    reason: str | None = None  # remediate | accept


class ResourceReprovisionRequested(
    Event, frozen=True, kw_only=True, tag="infrastructure.resource_reprovision_requested"
):
    """The resource is gone at the provider: made again to its spec (a remediation)."""

    finding_id: str | None = None


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
    | ResourceReprovisionRequested
    | ResourceUpdated
    | ResourceFailed
    | ResourceDeletionRequested
    | ResourceDeleted
)


# scan.<id>
class ScanRequested(Event, frozen=True, kw_only=True, tag="drift.scan_requested"):
    scan_id: str
    organization_id: str
    environment_id: str
    initiated_by: str | None = None  # the user; None for a schedule
    scheduled: bool = False
    # Remediate what it finds (a schedule in remediate mode): infrastructure only.
    remediate: bool = False


class ScanCompleted(Event, frozen=True, kw_only=True, tag="drift.scan_completed"):
    drifts_detected: int  # open findings after this scan
    critical: int
    new: int = 0
    reopened: int = 0
    changed: int = 0
    resolved: int = 0
    # The findings this scan saw (their last_seen moves), and what it could not read.
    seen: list[str] = []
    could_not_read: list[str] = []
    resources: int = 0  # how many were compared
    services: int = 0  # deployed services compared


class ScanFailed(Event, frozen=True, kw_only=True, tag="drift.scan_failed"):
    reason: str


class ScanSkipped(Event, frozen=True, kw_only=True, tag="drift.scan_skipped"):
    """Not carried out: a deployment was changing the environment (it would be its work)."""

    reason: str


ScanEvent = ScanRequested | ScanCompleted | ScanFailed | ScanSkipped


class DifferenceRecord(msgspec.Struct, frozen=True, kw_only=True):
    pointer: str
    expected: Any = None
    actual: Any = None


# finding.<id>
class DriftDetected(Event, frozen=True, kw_only=True, tag="drift.detected"):
    finding_id: str
    organization_id: str
    environment_id: str
    scan_id: str
    fingerprint: str
    resource_type: str
    resource_id: str | None = None  # the DeployForge id, when it is one of ours
    address: str
    kind: str  # missing | unexpected | changed
    severity: str
    differences: list[DifferenceRecord] = []
    digest: str = ""
    change: str = "new"  # new | reopened | changed


class DriftResolved(Event, frozen=True, kw_only=True, tag="drift.resolved"):
    scan_id: str


class FindingAcknowledged(Event, frozen=True, kw_only=True, tag="drift.acknowledged"):
    by: str
    reason: str | None = None


class FindingIgnored(Event, frozen=True, kw_only=True, tag="drift.ignored"):
    by: str
    reason: str
    until: datetime | None = None  # None: until someone reopens it; then scans reopen it


class FindingReopened(Event, frozen=True, kw_only=True, tag="drift.reopened"):
    """Acknowledged or ignored no more: open again (by someone, or an ignore expired)."""

    by: str


class RemediationRequested(Event, frozen=True, kw_only=True, tag="drift.remediation_requested"):
    by: str
    # reapply (the spec, by a job) | reprovision (a missing resource, by a job) |
    # redeploy (a service: a fresh deployment of what should run)
    action: str
    deployment_id: str | None = None  # the redeployment
    requested_at: datetime | None = None  # (rate-limits a schedule's remediation)


class FindingAccepted(Event, frozen=True, kw_only=True, tag="drift.accepted"):
    """What the provider has became the desired spec (a change of the resource)."""

    by: str


FindingEvent = (
    DriftDetected
    | DriftResolved
    | FindingAcknowledged
    | FindingIgnored
    | FindingReopened
    | RemediationRequested
    | FindingAccepted
)


# ignore_rule.<id>
class IgnoreRuleAdded(Event, frozen=True, kw_only=True, tag="drift.ignore_rule_added"):
    rule_id: str
    organization_id: str
    environment_id: str
    resource_type: str  # a glob: security_group, *
    resource: str  # a glob over the resource's DeployForge id and its address
    pointer: str  # a JSON pointer pattern; "" silences the whole finding
    reason: str
    expires_at: datetime | None = None
    by: str


class IgnoreRuleRemoved(Event, frozen=True, kw_only=True, tag="drift.ignore_rule_removed"):
    by: str


IgnoreRuleEvent = IgnoreRuleAdded | IgnoreRuleRemoved


# schedule.<environment_id>: one per environment
class ScheduleSet(Event, frozen=True, kw_only=True, tag="drift.schedule_set"):
    organization_id: str
    environment_id: str
    interval_seconds: int | None = None
    cron: str | None = None  # five fields, in UTC
    mode: str = "detect"  # detect | remediate
    since: datetime  # when it was set: the first scan is due an interval (or a tick) after
    by: str


class ScheduleRemoved(Event, frozen=True, kw_only=True, tag="drift.schedule_removed"):
    by: str


class ScheduleFired(Event, frozen=True, kw_only=True, tag="drift.schedule_fired"):
    scan_id: str
    due: datetime


ScheduleEvent = ScheduleSet | ScheduleRemoved | ScheduleFired

CODECS: dict[str, EventCodec[Event]] = {
    "resource": EventCodec(ResourceEvent),
    "scan": EventCodec(ScanEvent),
    "finding": EventCodec(FindingEvent),
    "ignore_rule": EventCodec(IgnoreRuleEvent),
    "schedule": EventCodec(ScheduleEvent),
}
