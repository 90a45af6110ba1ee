"""The webhooks context: its settings, its composition root and its declaration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from libs.crypto import SecretBox
from libs.host import Context, Resources, Wiring
from libs.settings import CoreSettings
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


async def wire(r: Resources[WebhooksSettings]) -> Wiring:
    settings, store = r.settings, r.store
    allowed = parse_networks(settings.webhook_allowed_networks)
    directory = Directory(store)
    await directory.start()
    r.stack.push_async_callback(directory.stop)
    sender = Sender(allowed, timeout=settings.webhook_timeout_seconds)
    await sender.start()
    r.stack.push_async_callback(sender.close)
    # Before commands are served: no replay request is missed.
    replayer = Replayer(store)
    await replayer.prepare()
    deps = WebhookDeps(
        store,
        SecretBox(settings.secret_key),
        allowed_networks=allowed,
        rotation_grace=timedelta(seconds=settings.webhook_rotation_grace_seconds),
        clock=lambda: datetime.now(UTC),
    )
    policy = DeliveryPolicy(
        schedule=parse_schedule(settings.webhook_retry_schedule),
        disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
        concurrency=settings.webhook_endpoint_concurrency,
        default_rate_limit=settings.webhook_default_rate_limit or None,
    )
    courier = Courier(store, directory, deps.box, sender, policy)
    return Wiring(
        endpoints=endpoints(deps),
        loops=[
            Dispatcher(store, directory, courier).run,
            DeliveryWorker(store, directory, courier).run,
            replayer.run,
        ],
    )


CONTEXT = Context(
    name=SERVICE,
    module="services.webhooks.main",
    settings=WebhooksSettings,
    streams=(ENDPOINTS, DELIVERIES),
    projections=(WebhookProjection, DeliveryProjection),
    wire=wire,
)
run = CONTEXT.run


def main() -> None:
    CONTEXT.main()


if __name__ == "__main__":
    main()
