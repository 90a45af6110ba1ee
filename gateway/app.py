"""The gateway's app factory: `create_app(settings)`; connections live in cleanup_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import structlog
from aiohttp import web

from deployforge.projections import PROJECTION_OF_STREAM
from gateway import keys
from gateway.authn import Authenticator
from gateway.consistency import ConsistencyWaiter
from gateway.idempotency import IdempotencyStore
from gateway.middleware import MIDDLEWARES
from gateway.openapi import api as meta_api
from gateway.ratelimit import RateLimiter
from gateway.routes import (
    audit,
    auth,
    certificates,
    deployments,
    domains,
    drift,
    drift_settings,
    environments,
    health,
    infrastructure,
    instances,
    live,
    logs,
    organizations,
    pipelines,
    projects,
    service_env,
    service_ops,
    services,
    tokens,
    users,
    webhooks,
)
from gateway.settings import GatewaySettings
from gateway.ui import STORE as UI_SESSIONS
from gateway.ui import SessionStore, create_ui
from gateway.user_directory import UserDirectory
from libs.crypto import SecretBox
from libs.database import create_pool, ensure_core_schema
from libs.messaging import CommandBus, connect_nats
from services.deploy import instance_state

log = structlog.get_logger("gateway")
SCHEMA = (Path(__file__).parent / "schema.sql").read_text()
ROUTE_TABLES = (
    audit.api,
    auth.api,
    users.api,
    organizations.api,
    tokens.api,
    environments.api,
    projects.api,
    services.api,
    service_env.api,
    service_ops.api,
    deployments.api,
    pipelines.api,
    instances.api,
    logs.api,
    live.api,
    health.api,
    domains.api,
    certificates.api,
    infrastructure.api,
    drift.api,
    drift_settings.api,
    webhooks.api,
    meta_api,
)


async def _connections(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    nc = await connect_nats(settings, "gateway")
    pool = await create_pool(settings.database_url, min_size=2, max_size=20)
    async with pool.acquire() as conn:
        await ensure_core_schema(conn)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('deployforge:ddl'))")
            await conn.execute(SCHEMA)
    app[keys.NC] = nc
    app[keys.POOL] = pool
    app[keys.BUS] = CommandBus(
        nc, namespace=settings.namespace, timeout=settings.command_timeout_seconds
    )
    app[keys.INSTANCES] = await instance_state.bucket(nc.jetstream(), settings.namespace)
    app[keys.RATE_LIMITER] = RateLimiter(pool)
    box = SecretBox(settings.secret_key) if settings.secret_key else None
    app[keys.IDEMPOTENCY] = IdempotencyStore(pool, box)
    app[UI_SESSIONS] = SessionStore(pool, box)
    waiter = ConsistencyWaiter(settings.database_url, pool)
    await waiter.start()
    app[keys.CONSISTENCY] = waiter
    users = UserDirectory(pool, lambda: waiter.position(PROJECTION_OF_STREAM["auth"]))
    app[keys.USERS] = users
    authenticator = Authenticator(
        pool,
        nc.jetstream(),
        users,
        namespace=settings.namespace,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl=settings.access_token_ttl_seconds,
    )
    await authenticator.start()
    app[keys.AUTHENTICATOR] = authenticator
    sweeper = asyncio.create_task(_sweep(app[keys.IDEMPOTENCY], app[UI_SESSIONS]))
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await waiter.stop()
        await app[keys.RATE_LIMITER].close()
        await authenticator.stop()
        await pool.close()
        await nc.drain()


async def _sweep(keys: IdempotencyStore, sessions: SessionStore, every: float = 3600.0) -> None:
    """Forget idempotency keys past their retention and the UI's ended sessions, once an
    hour (any replica may)."""
    while True:
        try:
            await keys.sweep()
            await sessions.sweep()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("sweep_failed", error=str(exc))
        await asyncio.sleep(every)


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=settings.max_body_bytes)
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.append(_connections)
    for table in ROUTE_TABLES:
        app.add_routes(table.routes)
    app[keys.UI_RELAY_SECRET] = secrets.token_urlsafe(32)
    app.add_subapp("/ui", create_ui(app[keys.UI_RELAY_SECRET]))
    return app
