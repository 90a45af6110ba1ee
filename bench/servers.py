"""The NATS and PostgreSQL servers a run measures against.

By default both are the embedded servers with their production settings:
nats-server with `sync_interval: always` and PostgreSQL with fsync on, as
`deployforge up` runs them (the test harness turns Postgres fsync off, which
would flatter every figure that commits). `DEPLOYFORGE_TEST_NATS_URL` and
`DEPLOYFORGE_TEST_DATABASE_URL` point the run at other servers instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import nats

from libs.embedded import EmbeddedNats, EmbeddedPostgres
from libs.testing import Servers


class BenchServers(msgspec.Struct, frozen=True, kw_only=True):
    servers: Servers
    description: str
    nats_version: str
    postgres_version: str


@contextlib.asynccontextmanager
async def embedded_nats(data_dir: Path, sync_interval: str) -> AsyncIterator[EmbeddedNats]:
    """A nats-server of our own for the run, stopped afterwards."""
    server = EmbeddedNats(data_dir, sync_interval=sync_interval)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def nats_version(url: str) -> str:
    nc = await nats.connect(url)
    try:
        v = nc.connected_server_version
        return f"v{v.major}.{v.minor}.{v.patch}"
    finally:
        await nc.close()


async def postgres_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version: str = await conn.fetchval("SHOW server_version")
        fsync: str = await conn.fetchval("SHOW fsync")
        commit: str = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"{version} (fsync {fsync}, synchronous_commit {commit})"


@contextlib.asynccontextmanager
async def provision(work_dir: Path) -> AsyncIterator[BenchServers]:
    """Servers for the gateway and lag benchmarks, for the duration of the run."""
    nats_url = os.environ.get("DEPLOYFORGE_TEST_NATS_URL")
    database_url = os.environ.get("DEPLOYFORGE_TEST_DATABASE_URL")
    if nats_url and database_url:
        yield await _described(Servers(nats_url, database_url, "environment"), "from environment")
        return
    nats_server = EmbeddedNats(work_dir / "nats", sync_interval="always")
    postgres = EmbeddedPostgres(work_dir / "postgres", fsync=True)
    await asyncio.gather(nats_server.start(), postgres.start())
    try:
        servers = Servers(nats_server.url, postgres.url(), "embedded")
        yield await _described(
            servers, "embedded, on this machine (nats sync_interval always, postgres fsync on)"
        )
    finally:
        await asyncio.gather(nats_server.stop(), postgres.stop())


async def _described(servers: Servers, description: str) -> BenchServers:
    nats_v, postgres_v = await asyncio.gather(
        nats_version(servers.nats_url), postgres_version(servers.admin_dsn)
    )
    return BenchServers(
        servers=servers,
        description=description,
        nats_version=nats_v,
        postgres_version=postgres_v,
    )
