"""Composition root of the webhooks service: settings, connections, start/stop."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import structlog

from libs.crypto import SecretBox
from libs.eventstore import EventStore
from libs.lifecycle import run_until_signalled
from libs.messaging import connect_nats, serve
from libs.metrics import start_metrics_server
from libs.projections import ProjectionRunner
from libs.settings import CoreSettings, load_settings
from services.webhooks.api import SERVICE, endpoints
from services.webhooks.courier import Courier, DeliveryPolicy
from services.webhooks.delivery import DeliveryWorker
from services.webhooks.directory import Directory
from services.webhooks.dispatcher import Dispatcher
from services.webhooks.events import DELIVERIES, ENDPOINTS
from services.webhooks.handlers import WebhookDeps
from services.webhooks.projection import DeliveryProjection, WebhookProjection
from services.webhooks.replay import Replayer
from services.webhooks.schedule import DEFAULT_SCHEDULE, parse_schedule
from services.webhooks.sender import Sender
from services.webhooks.ssrf import parse_networks

log = structlog.get_logger("webhooks")


class WebhooksSettings(CoreSettings, frozen=True, kw_only=True):
    # Seconds before each attempt, the first usually 0 (tests compress it).
    webhook_retry_schedule: str = ",".join(f"{d:g}" for d in DEFAULT_SCHEDULE)
    # An endpoint whose every attempt failed for this long is disabled (5 days).
    webhook_disable_after_seconds: float = 5 * 86400
    # Networks a receiver may be in although they are not public, e.g. "10.0.0.0/8".
    webhook_allowed_networks: str = ""
    # For how long a rotated-out secret still signs.
    webhook_rotation_grace_seconds: float = 86400
    webhook_endpoint_concurrency: int = 8
    # Deliveries per second per endpoint when the endpoint sets none (0: no limit).
    webhook_default_rate_limit: int = 0
    webhook_timeout_seconds: float = 15.0
    run_projection: bool = True


async def run(
    settings: WebhooksSettings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Serve until `stop` is set; `ready` is set once commands are served and events flow."""
    allowed = parse_networks(settings.webhook_allowed_networks)
    async with AsyncExitStack() as stack:
        nc = await connect_nats(settings, "webhooks")
        stack.push_async_callback(nc.drain)
        store = EventStore(
            nc.jetstream(), namespace=settings.namespace, replicas=settings.stream_replicas
        )
        await store.ensure_stream(ENDPOINTS)
        await store.ensure_stream(DELIVERIES)
        directory = Directory(store)
        await directory.start()
        stack.push_async_callback(directory.stop)
        sender = Sender(allowed, timeout=settings.webhook_timeout_seconds)
        await sender.start()
        stack.push_async_callback(sender.close)
        replayer = Replayer(store)
        await replayer.prepare()
        deps = WebhookDeps(
            store,
            SecretBox(settings.secret_key),
            allowed_networks=allowed,
            rotation_grace=timedelta(seconds=settings.webhook_rotation_grace_seconds),
            clock=lambda: datetime.now(UTC),
        )
        server = await serve(
            nc,
            service=SERVICE,
            namespace=settings.namespace,
            version="0.1.0",
            endpoints=endpoints(deps),
        )
        stack.push_async_callback(server.stop)
        policy = DeliveryPolicy(
            schedule=parse_schedule(settings.webhook_retry_schedule),
            disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
            concurrency=settings.webhook_endpoint_concurrency,
            default_rate_limit=settings.webhook_default_rate_limit or None,
        )
        courier = Courier(store, directory, deps.box, sender, policy)
        worker = DeliveryWorker(store, directory, courier)
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(Dispatcher(store, directory, courier).run(stop)),
            asyncio.create_task(worker.run(stop)),
            asyncio.create_task(replayer.run(stop)),
        ]
        if settings.run_projection:
            runners = [
                ProjectionRunner(WebhookProjection(), settings.database_url, store),
                ProjectionRunner(DeliveryProjection(), settings.database_url, store),
            ]
            tasks += [asyncio.create_task(r.run(stop)) for r in runners]
            for runner in runners:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runner.leading.wait(), timeout=5)
        if settings.metrics_port:
            metrics = await start_metrics_server(settings.metrics_host, settings.metrics_port)
            stack.push_async_callback(metrics.cleanup)
        log.info("webhooks_ready", namespace=settings.namespace)
        if ready is not None:
            ready.set()
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
    log.info("webhooks_stopped")


def main() -> None:
    run_until_signalled("webhooks", load_settings(WebhooksSettings), run)


if __name__ == "__main__":
    main()
