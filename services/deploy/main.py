"""Composition root of the deploy service: settings, connections, start/stop."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import structlog

from libs.aggregate import snapshot_bucket
from libs.crypto import SecretBox
from libs.database import create_pool
from libs.eventstore import EventStore
from libs.lifecycle import run_until_signalled
from libs.messaging import CommandBus, connect_nats, serve
from libs.metrics import start_metrics_server
from libs.projections import ProjectionRunner
from libs.settings import CoreSettings, load_settings
from services.deploy import jobs, logs
from services.deploy.api import SERVICE, endpoints
from services.deploy.dispatch_process import DispatchProcess
from services.deploy.events import STREAM
from services.deploy.handlers import DeployDeps
from services.deploy.projection import DeployProjection
from services.deploy.watchdog import watch_leases

log = structlog.get_logger("deploy")


class DeploySettings(CoreSettings, frozen=True, kw_only=True):
    # At most this many deployments run at once per organization; the rest queue.
    max_running_deployments: int = 5
    lease_check_seconds: float = 5.0
    run_projection: bool = True


async def run(
    settings: DeploySettings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Serve until `stop` is set; `ready` is set once commands are served."""
    async with AsyncExitStack() as stack:
        nc = await connect_nats(settings, "deploy")
        stack.push_async_callback(nc.drain)
        store = EventStore(
            nc.jetstream(), namespace=settings.namespace, replicas=settings.stream_replicas
        )
        await store.ensure_stream(STREAM)
        leases = await jobs.ensure(store.js, settings.namespace, settings.stream_replicas)
        await logs.ensure_stream(store.js, settings.namespace, settings.stream_replicas)
        snapshots = await snapshot_bucket(store.js, settings.namespace, settings.stream_replicas)
        pool = await create_pool(settings.database_url, min_size=1, max_size=10)
        stack.push_async_callback(pool.close)
        deps = DeployDeps(
            store,
            SecretBox(settings.secret_key),
            pool,
            max_running=settings.max_running_deployments,
            bus=CommandBus(nc, namespace=settings.namespace),
            clock=lambda: datetime.now(UTC),
            snapshots=snapshots,
        )
        server = await serve(
            nc,
            service=SERVICE,
            namespace=settings.namespace,
            version="0.1.0",
            endpoints=endpoints(deps),
        )
        stack.push_async_callback(server.stop)
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(
                watch_leases(deps, leases, stop, interval=settings.lease_check_seconds)
            ),
            # Finishes whatever a command left half done (a crash between its appends).
            asyncio.create_task(DispatchProcess(deps).run(stop)),
        ]
        if settings.run_projection:
            runner = ProjectionRunner(DeployProjection(), settings.database_url, store)
            tasks.append(asyncio.create_task(runner.run(stop)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.leading.wait(), timeout=5)
        if settings.metrics_port:
            metrics = await start_metrics_server(settings.metrics_host, settings.metrics_port)
            stack.push_async_callback(metrics.cleanup)
        log.info("deploy_ready", namespace=settings.namespace)
        if ready is not None:
            ready.set()
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
    log.info("deploy_stopped")


def main() -> None:
    run_until_signalled("deploy", load_settings(DeploySettings), run)


if __name__ == "__main__":
    main()
