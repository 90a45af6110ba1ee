"""Fails deployments whose agent was lost, so none is left "running" forever.

An agent renews a lease (a KV entry that expires after `LEASE_SECONDS`) for
each deployment it runs. Every `interval` the watchdog looks at the running
agent deployments in the read model; one without a lease is failed and its
slot freed. Several deploy replicas may watch at once: the second to fail a
deployment finds it already failed and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import nats.errors
import nats.js.errors
import structlog
from nats.js.kv import KeyValue

from libs.errors import DomainError
from services.deploy.handlers import DeployDeps, fail_lost

log = structlog.get_logger("deploy.watchdog")


async def watch_leases(
    deps: DeployDeps, leases: KeyValue, stop: asyncio.Event, *, interval: float = 5.0
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        try:
            await check_leases(deps, leases)
        except (OSError, asyncpg.PostgresError, nats.errors.Error) as exc:
            log.warning("lease_check_failed", error=str(exc))


async def check_leases(deps: DeployDeps, leases: KeyValue) -> list[str]:
    """Fail every running agent deployment without a lease; the ones failed."""
    rows = await deps.pool.fetch(
        "SELECT id FROM deploy.deployments"
        " WHERE status IN ('initializing', 'running') AND agent_id IS NOT NULL"
    )
    lost = []
    for row in rows:
        try:
            await leases.get(row["id"])
            continue
        except nats.js.errors.KeyNotFoundError:
            pass
        try:
            await fail_lost(deps, row["id"], "the agent running this deployment was lost")
        except DomainError as exc:
            log.info("lost_deployment_not_failed", deployment_id=row["id"], error=exc.message)
            continue
        log.warning("deployment_agent_lost", deployment_id=row["id"])
        lost.append(row["id"])
    return lost
