"""`deployforge projections`: see where each read model is, and act on a stalled one.

A projection that meets an event it cannot apply stops at it (libs.projections)
and waits here: `retry` asks it to try again (after an upgrade that fixes the
cause, or to see whether the cause has gone), `skip` passes over that one event
for good, in the live model and in every replay.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from deployforge.up import operator_settings
from libs.database import connect, ensure_core_schema


async def run_projections(
    action: str, name: str | None, seq: int | None, reason: str, data_dir: Path
) -> int:
    # DEPLOYFORGE_* first, else the servers a running `up` in `data_dir` uses.
    conn = await connect(operator_settings(data_dir).database_url)
    try:
        await ensure_core_schema(conn)
        if action == "status":
            return await _status(conn)
        if name is None:
            print(f"`deployforge projections {action}` needs the projection's name")
            return 2
        if action == "retry":
            return await _retry(conn, name)
        return await _skip(conn, name, seq, reason)
    finally:
        await conn.close()


async def _status(conn: asyncpg.Connection) -> int:
    rows = await conn.fetch(
        "SELECT projection, stream, position, stalled_at, stalled_error, stalled_since "
        "FROM deployforge.projection_checkpoints ORDER BY projection"
    )
    stalled = 0
    for row in rows:
        line = f"{row['projection']:<24} {row['stream']:<28} at {row['position']}"
        if row["stalled_at"] is not None:
            stalled += 1
            line += (
                f"  STALLED at sequence {row['stalled_at']} ({row['stalled_error']})"
                f" since {row['stalled_since']:%Y-%m-%d %H:%M:%S}"
            )
        print(line)
    return 1 if stalled else 0


async def _stalled_at(conn: asyncpg.Connection, name: str) -> int | None:
    value = await conn.fetchval(
        "SELECT stalled_at FROM deployforge.projection_checkpoints WHERE projection = $1", name
    )
    return int(value) if value is not None else None


async def _retry(conn: asyncpg.Connection, name: str) -> int:
    seq = await _stalled_at(conn, name)
    if seq is None:
        print(f"{name} is not stalled")
        return 0
    await conn.execute(
        "UPDATE deployforge.projection_checkpoints "
        "SET stalled_at = NULL, stalled_error = NULL, stalled_since = NULL WHERE projection = $1",
        name,
    )
    print(f"{name} will try sequence {seq} again within seconds")
    return 0


async def _skip(conn: asyncpg.Connection, name: str, seq: int | None, reason: str) -> int:
    stalled = await _stalled_at(conn, name)
    if seq is None:
        seq = stalled
    if seq is None:
        print(f"{name} is not stalled; name the sequence to skip with --seq")
        return 2
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO deployforge.projection_skips (projection, seq, reason) "
            "VALUES ($1, $2, $3) "
            "ON CONFLICT (projection, seq) DO UPDATE SET reason = EXCLUDED.reason",
            name,
            seq,
            reason,
        )
        if stalled == seq:
            await conn.execute(
                "UPDATE deployforge.projection_checkpoints "
                "SET stalled_at = NULL, stalled_error = NULL, stalled_since = NULL "
                "WHERE projection = $1",
                name,
            )
    print(f"{name} passes over sequence {seq} from now on, in replays too")
    return 0
