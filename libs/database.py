"""PostgreSQL connections and the suite's own bookkeeping schema."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

# Bookkeeping shared by every projection: how far each one got.
CORE_DDL = """
CREATE SCHEMA IF NOT EXISTS deployforge;
CREATE TABLE IF NOT EXISTS deployforge.projection_checkpoints (
    projection text PRIMARY KEY,
    stream     text NOT NULL,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- A projection stopped at an event it cannot apply, until an operator acts.
DO $$ BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns WHERE table_schema = 'deployforge'
        AND table_name = 'projection_checkpoints' AND column_name = 'stalled_at'
    ) THEN
        ALTER TABLE deployforge.projection_checkpoints
            ADD COLUMN stalled_at bigint,
            ADD COLUMN stalled_error text,
            ADD COLUMN stalled_since timestamptz;
    END IF;
END $$;
-- Events an operator chose to pass over; replays pass over them too.
CREATE TABLE IF NOT EXISTS deployforge.projection_skips (
    projection text NOT NULL,
    seq        bigint NOT NULL,
    reason     text NOT NULL DEFAULT '',
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, seq)
);
"""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb columns to Python values."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's (for listeners and leaders)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip on every release: pool connections hold no
    session state (settings are SET LOCAL, advisory locks transaction-scoped,
    LISTEN only on dedicated connections)."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    import json

    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def ensure_core_schema(conn: asyncpg.Connection) -> None:
    # Two processes racing on CREATE ... IF NOT EXISTS can still collide on the
    # catalog; an advisory lock makes schema setup one-at-a-time.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('deployforge:ddl'))")
        await conn.execute(CORE_DDL)


def with_database(dsn: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


async def ensure_database(dsn: str) -> None:
    """Create the database `dsn` names if the server lacks it."""
    name = database_name(dsn)
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    name = database_name(dsn)
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
