"""Every read model the suite keeps, by the name `deployforge replay` takes."""

from __future__ import annotations

from collections.abc import Callable

from libs.eventstore import StreamSpec
from libs.projections import Projection
from services.auth.events import STREAM as AUTH_STREAM
from services.auth.projection import AuthProjection
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.deploy.projection import DeployProjection
from services.webhooks.events import DELIVERIES, ENDPOINTS
from services.webhooks.projection import DeliveryProjection, WebhookProjection

PROJECTIONS: dict[str, Callable[[], Projection]] = {
    "auth": AuthProjection,
    "deploy": DeployProjection,
    "webhooks": WebhookProjection,
    "webhook_deliveries": DeliveryProjection,
}
STREAMS: tuple[StreamSpec, ...] = (AUTH_STREAM, DEPLOY_STREAM, ENDPOINTS, DELIVERIES)
