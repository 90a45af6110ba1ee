"""The drift read model (schema `drift`). Timestamps come from event metadata, so a replay
rebuilds identical rows."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import msgspec

from libs.events import Event, Recorded
from libs.projections import Projection
from services.drift.events import (
    CODECS,
    STREAM,
    DriftDetected,
    DriftResolved,
    FindingAccepted,
    FindingAcknowledged,
    FindingIgnored,
    FindingReopened,
    IgnoreRuleAdded,
    IgnoreRuleRemoved,
    RemediationRequested,
    ResourceChangeRequested,
    ResourceDeleted,
    ResourceDeletionRequested,
    ResourceFailed,
    ResourceProvisioned,
    ResourceReprovisionRequested,
    ResourceRequested,
    ResourceUpdated,
    ScanCompleted,
    ScanFailed,
    ScanRequested,
    ScanSkipped,
    ScheduleFired,
    ScheduleRemoved,
    ScheduleSet,
)


class DriftProjection(Projection):
    name = "drift"
    schema = "drift"
    spec = STREAM
    ddl = (Path(__file__).parent / "schema.sql").read_text()
    codecs = {k: CODECS[k] for k in STREAM.aggregates}

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        if recorded.meta.aggregate == "scan":
            await _apply_scan(conn, recorded)
            return
        if recorded.meta.aggregate == "finding":
            await _apply_finding(conn, recorded)
            return
        if recorded.meta.aggregate == "ignore_rule":
            await _apply_rule(conn, recorded)
            return
        if recorded.meta.aggregate == "schedule":
            await _apply_schedule(conn, recorded)
            return
        event, at, resource_id = (
            recorded.event,
            recorded.meta.occurred_at,
            recorded.meta.aggregate_id,
        )
        match event:
            case ResourceRequested():
                await conn.execute(
                    "INSERT INTO resources (id, organization_id, environment_id, type, provider,"
                    " region, specs, tags, status, last_operation, created_at, updated_at)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'provisioning','provision',$9,$9)"
                    " ON CONFLICT DO NOTHING",
                    resource_id,
                    event.organization_id,
                    event.environment_id,
                    event.resource_type,
                    event.provider,
                    event.region,
                    json.dumps(event.specs),
                    json.dumps(event.tags),
                    at,
                )
            case ResourceProvisioned():
                await self._set(
                    conn,
                    resource_id,
                    at,
                    status="active",
                    provider_id=event.provider_id,
                    attributes=json.dumps(event.attributes),
                    last_error=None,
                )
            case ResourceChangeRequested():
                fields: dict[str, object] = {"status": "updating", "last_operation": "update"}
                if event.specs is not None:
                    fields["specs"] = json.dumps(event.specs)
                if event.tags is not None:
                    fields["tags"] = json.dumps(event.tags)
                await self._set(conn, resource_id, at, **fields)
            case ResourceUpdated():
                await self._set(
                    conn,
                    resource_id,
                    at,
                    status="active",
                    attributes=json.dumps(event.attributes),
                    last_error=None,
                )
            case ResourceFailed():
                await self._set(
                    conn,
                    resource_id,
                    at,
                    status="failed",
                    last_operation=event.operation,
                    last_error=event.error,
                )
            case ResourceReprovisionRequested():
                await self._set(
                    conn, resource_id, at, status="provisioning", last_operation="provision"
                )
            case ResourceDeletionRequested():
                await self._set(conn, resource_id, at, status="deleting", last_operation="delete")
            case ResourceDeleted():
                await self._set(conn, resource_id, at, status="deleted", deleted_at=at)

    @staticmethod
    async def _set(
        conn: asyncpg.Connection, resource_id: str, at: object, **fields: object
    ) -> None:
        # The column names are this module's own literals, never input.
        sets = ", ".join(f"{k} = ${n}" for n, k in enumerate(fields, start=3))
        await conn.execute(
            f"UPDATE resources SET {sets}, updated_at = $2 WHERE id = $1",  # noqa: S608
            resource_id,
            at,
            *fields.values(),
        )


async def _apply_scan(conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
    event, at, scan_id = recorded.event, recorded.meta.occurred_at, recorded.meta.aggregate_id
    match event:
        case ScanRequested():
            await conn.execute(
                "INSERT INTO scans (id, organization_id, environment_id, initiated_by, status,"
                " started_at, scheduled, remediate) VALUES ($1,$2,$3,$4,'running',$5,$6,$7)"
                " ON CONFLICT DO NOTHING",
                scan_id,
                event.organization_id,
                event.environment_id,
                event.initiated_by,
                at,
                event.scheduled,
                event.remediate,
            )
        case ScanCompleted():
            await conn.execute(
                "UPDATE scans SET status = 'completed', drifts_detected = $2, critical = $3,"
                " new = $4, reopened = $5, changed = $6, resolved = $7, resources = $8,"
                " could_not_read = $9, finished_at = $10, services = $11 WHERE id = $1",
                scan_id,
                event.drifts_detected,
                event.critical,
                event.new,
                event.reopened,
                event.changed,
                event.resolved,
                event.resources,
                event.could_not_read,
                at,
                event.services,
            )
            # What this scan saw again is still there: its last_seen moves.
            await conn.execute(
                "UPDATE findings SET last_seen = $2, last_scan_id = $3 WHERE id = ANY($1::text[])",
                event.seen,
                at,
                scan_id,
            )
        case ScanFailed() | ScanSkipped():
            await conn.execute(
                "UPDATE scans SET status = $4, reason = $2, finished_at = $3 WHERE id = $1",
                scan_id,
                event.reason,
                at,
                "failed" if isinstance(event, ScanFailed) else "skipped",
            )


async def _apply_finding(conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
    event, at, finding_id = recorded.event, recorded.meta.occurred_at, recorded.meta.aggregate_id
    match event:
        case DriftDetected():
            differences = json.dumps(msgspec.to_builtins(event.differences))
            await conn.execute(
                "INSERT INTO findings (id, organization_id, environment_id, fingerprint,"
                " resource_type, resource_id, address, kind, severity, differences, state,"
                " first_seen, last_seen, last_scan_id) VALUES"
                " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,'open',$11,$11,$12)"
                " ON CONFLICT (id) DO UPDATE SET severity = $9, differences = $10,"
                " state = CASE WHEN findings.state IN ('acknowledged', 'ignored')"
                "   THEN findings.state ELSE 'open' END,"
                " last_seen = $11, last_scan_id = $12, detections = findings.detections + 1,"
                " resolved_at = NULL",
                finding_id,
                event.organization_id,
                event.environment_id,
                event.fingerprint,
                event.resource_type,
                event.resource_id,
                event.address,
                event.kind,
                event.severity,
                differences,
                at,
                event.scan_id,
            )
        case DriftResolved():
            await conn.execute(
                "UPDATE findings SET state = 'resolved', resolved_at = $2, last_scan_id = $3,"
                " ignored_until = NULL WHERE id = $1",
                finding_id,
                at,
                event.scan_id,
            )
        case FindingAcknowledged():
            await _triaged(conn, finding_id, "acknowledged", event.by, event.reason, None, at)
        case FindingIgnored():
            await _triaged(conn, finding_id, "ignored", event.by, event.reason, event.until, at)
        case FindingReopened():
            await _triaged(conn, finding_id, "open", event.by, None, None, at)
        case RemediationRequested() | FindingAccepted():
            action = "remediate" if isinstance(event, RemediationRequested) else "accept"
            deployment = event.deployment_id if isinstance(event, RemediationRequested) else None
            await conn.execute(
                "UPDATE findings SET last_action = $2, last_action_by = $3, last_action_at = $4,"
                " remediation_deployment_id = $5 WHERE id = $1",
                finding_id,
                action,
                event.by,
                at,
                deployment,
            )


async def _triaged(
    conn: asyncpg.Connection, finding_id: str, state: str, by: str, reason: str | None,
    until: object, at: object,
) -> None:  # fmt: skip
    await conn.execute(
        "UPDATE findings SET state = $2, state_by = $3, state_reason = $4, state_at = $5,"
        " ignored_until = $6 WHERE id = $1",
        finding_id,
        state,
        by,
        reason,
        at,
        until,
    )


async def _apply_rule(conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
    event, at, rule_id = recorded.event, recorded.meta.occurred_at, recorded.meta.aggregate_id
    match event:
        case IgnoreRuleAdded():
            await conn.execute(
                "INSERT INTO ignore_rules (id, organization_id, environment_id, resource_type,"
                " resource, pointer, reason, expires_at, created_by, created_at) VALUES"
                " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
                rule_id,
                event.organization_id,
                event.environment_id,
                event.resource_type,
                event.resource,
                event.pointer,
                event.reason,
                event.expires_at,
                event.by,
                at,
            )
        case IgnoreRuleRemoved():
            await conn.execute("UPDATE ignore_rules SET removed_at = $2 WHERE id = $1", rule_id, at)


async def _apply_schedule(conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
    event, at, environment_id = (
        recorded.event,
        recorded.meta.occurred_at,
        recorded.meta.aggregate_id,
    )
    match event:
        case ScheduleSet():
            await conn.execute(
                "INSERT INTO schedules (environment_id, organization_id, interval_seconds, cron,"
                " mode, set_by, since, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
                " ON CONFLICT (environment_id) DO UPDATE SET interval_seconds = $3, cron = $4,"
                " mode = $5, set_by = $6, since = $7, updated_at = $8, removed_at = NULL",
                environment_id,
                event.organization_id,
                event.interval_seconds,
                event.cron,
                event.mode,
                event.by,
                event.since,
                at,
            )
        case ScheduleRemoved():
            await conn.execute(
                "UPDATE schedules SET removed_at = $2, updated_at = $2 WHERE environment_id = $1",
                environment_id,
                at,
            )
        case ScheduleFired():
            await conn.execute(
                "UPDATE schedules SET last_due = $2, last_scan_id = $3 WHERE environment_id = $1",
                environment_id,
                event.due,
                event.scan_id,
            )
