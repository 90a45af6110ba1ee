"""The identity service in its own process, on an isolated suite, with an administrator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import nats
from nats.aio.client import Client as NATS

from bench.procs import Child, running, wait_until
from libs.messaging import CommandBus
from libs.projections import checkpoint
from libs.testing import Suite
from services.auth.commands import BootstrapResult

ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
# Quiet processes: a log line per request would be part of what is measured.
QUIET = {"DEPLOYFORGE_LOG_LEVEL": "warning", "DEPLOYFORGE_LOG_FORMAT": "json"}


class Admin(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    organization_id: str
    # Stream position of the bootstrap's last event.
    position: int


@contextlib.asynccontextmanager
async def auth_service(suite: Suite, log_dir: Path) -> AsyncIterator[Child]:
    """`python -m services.auth.main` on `suite`, once it answers a micro PING."""
    async with running("auth", "services.auth.main", {**suite.environ(), **QUIET}, log_dir) as auth:
        nc = await nats.connect(suite.nats_url)
        try:
            bus = CommandBus(nc, namespace=suite.namespace)
            await wait_until(lambda: bus.ping("auth"), "the auth service", children=[auth])
        finally:
            await nc.close()
        yield auth


async def bootstrap_admin(nc: NATS, suite: Suite) -> Admin:
    bus = CommandBus(nc, namespace=suite.namespace)
    result = await bus.request(
        "auth", "bootstrap_admin", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    reply = msgspec.json.decode(result.data, type=BootstrapResult)
    position = int((result.position or "auth:0").rpartition(":")[2])
    return Admin(user_id=reply.user_id, organization_id=reply.organization_id, position=position)


async def wait_projected(suite: Suite, position: int, auth: Child) -> None:
    """Until the auth projection has checkpointed `position`."""
    conn = await asyncpg.connect(suite.database_url)
    try:

        async def projected() -> bool:
            return await checkpoint(conn, "auth") >= position

        await wait_until(projected, f"the auth projection at {position}", children=[auth])
    finally:
        await conn.close()
