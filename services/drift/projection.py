"""The drift read model (schema `drift`). Timestamps come from event metadata, so a replay
rebuilds identical rows."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from libs.events import Event, Recorded
from libs.projections import Projection
from services.drift.events import (
    CODECS,
    STREAM,
    ResourceChangeRequested,
    ResourceDeleted,
    ResourceDeletionRequested,
    ResourceFailed,
    ResourceProvisioned,
    ResourceRequested,
    ResourceUpdated,
)


class DriftProjection(Projection):
    name = "drift"
    schema = "drift"
    spec = STREAM
    ddl = (Path(__file__).parent / "schema.sql").read_text()
    codecs = {"resource": CODECS["resource"]}

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
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
