"""The events of the webhooks context: endpoints (`webhook.<id>`) and deliveries
(`delivery.<id>`), each in a stream of its own.

Endpoints change rarely and the dispatcher must know all of them before it
fans an event out; deliveries are many. Two streams let the dispatcher ask
"am I up to date on endpoints?" with one cheap stream-info call, whatever the
delivery traffic.

Endpoint secrets appear only sealed with the suite's master key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libs.events import Event, EventCodec
from libs.eventstore import StreamSpec

ENDPOINTS = StreamSpec(context="webhooks", aggregates=("webhook",))
DELIVERIES = StreamSpec(context="webhook_deliveries", aggregates=("delivery",))


# webhook.<id>: an endpoint an organization registered.
class WebhookCreated(Event, frozen=True, kw_only=True, tag="webhook.created"):
    webhook_id: str
    organization_id: str
    url: str
    # Event names (`deployment.failed`) and patterns (`deployment.*`, `*`).
    events: list[str]
    description: str = ""
    active: bool = True
    secret_sealed: str
    # Deliveries per second at most; None: the suite's default.
    rate_limit: int | None = None


class WebhookUpdated(Event, frozen=True, kw_only=True, tag="webhook.updated"):
    # Only the fields that changed: url, events, description, active, rate_limit.
    changes: dict[str, Any]


class WebhookSecretRotated(Event, frozen=True, kw_only=True, tag="webhook.secret_rotated"):
    secret_sealed: str
    # The secret it replaces keeps signing too until then.
    previous_sealed: str
    previous_expires_at: datetime


class WebhookFailing(Event, frozen=True, kw_only=True, tag="webhook.failing"):
    """The first failed attempt after a success: the start of a failing streak."""

    since: datetime


class WebhookRecovered(Event, frozen=True, kw_only=True, tag="webhook.recovered"):
    pass


class WebhookDisabled(Event, frozen=True, kw_only=True, tag="webhook.disabled"):
    reason: str


class WebhookReplayRequested(Event, frozen=True, kw_only=True, tag="webhook.replay_requested"):
    replay_id: str
    since: datetime


class WebhookDeleted(Event, frozen=True, kw_only=True, tag="webhook.deleted"):
    pass


WebhookEvent = (
    WebhookCreated
    | WebhookUpdated
    | WebhookSecretRotated
    | WebhookFailing
    | WebhookRecovered
    | WebhookDisabled
    | WebhookReplayRequested
    | WebhookDeleted
)


# delivery.<id>: one event to one endpoint; its id is the `webhook-id` of every attempt.
class DeliveryAttempted(Event, frozen=True, kw_only=True, tag="delivery.attempted"):
    attempt: int
    attempted_at: datetime
    succeeded: bool
    status_code: int | None = None
    latency_ms: float = 0.0
    response_excerpt: str = ""
    error: str | None = None
    # When the next attempt is due; None when this one was the last.
    next_attempt_at: datetime | None = None


class DeliveryScheduled(Event, frozen=True, kw_only=True, tag="delivery.scheduled"):
    delivery_id: str
    webhook_id: str
    organization_id: str
    # The event delivered: its id (the source event's, or the ping's) and public type.
    event_id: str
    event_type: str
    # The exact body sent on every attempt.
    body: str
    occurred_at: datetime
    # The first attempt, when the dispatcher made it before recording the delivery:
    # one append instead of two for most deliveries (see dispatcher.py).
    first_attempt: DeliveryAttempted | None = None
    # Why it was scheduled when that was not a new event: "replay rpl_...".
    reason: str | None = None


class DeliveryRequeued(Event, frozen=True, kw_only=True, tag="delivery.requeued"):
    """Attempt again now, on a fresh retry schedule (redeliver, replay)."""

    reason: str


class DeliveryExhausted(Event, frozen=True, kw_only=True, tag="delivery.exhausted"):
    # Repeated from the schedule, so that `webhook.delivery_exhausted` is built from this alone.
    webhook_id: str
    event_id: str
    event_type: str
    attempts: int
    last_error: str | None = None


class DeliveryAbandoned(Event, frozen=True, kw_only=True, tag="delivery.abandoned"):
    """No more attempts: the endpoint is gone, disabled or deleted."""

    reason: str


DeliveryEvent = (
    DeliveryScheduled | DeliveryAttempted | DeliveryRequeued | DeliveryExhausted | DeliveryAbandoned
)


CODECS: dict[str, EventCodec[Event]] = {
    "webhook": EventCodec(WebhookEvent),
    "delivery": EventCodec(DeliveryEvent),
}
