"""The ignore rules in force for an environment, from the drift read model (used by the
scanner and by remediation jobs alike)."""

from __future__ import annotations

import asyncpg

from services.drift.ignore_rules import IgnoreRule


async def rules_of(conn: asyncpg.Connection, environment_id: str) -> list[IgnoreRule]:
    """The environment's rules not removed (expired ones too: `IgnoreRule.live` decides)."""
    rows = await conn.fetch(
        "SELECT resource_type, resource, pointer, expires_at FROM drift.ignore_rules"
        " WHERE environment_id = $1 AND removed_at IS NULL",
        environment_id,
    )
    return [IgnoreRule(**dict(row)) for row in rows]
