"""From a recorded event to the deliveries it owes: translate, match, schedule.

Shared by the dispatcher (every new event), the replay of an endpoint (events
since a time) and the delivery worker (`webhook.delivery_exhausted`).

A delivery's id is derived from the endpoint and the event, so scheduling the
same event for the same endpoint twice (a redelivered message, a dispatcher
restarted mid-batch) appends nothing twice, and every attempt of it carries
the same `webhook-id`.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import msgspec
import nats.js.errors

from libs.aggregate import AggregateType, load_state
from libs.events import Event, EventCodec, EventContext, Recorded, meta_from_headers
from libs.eventstore import ConcurrencyError, EventStore
from libs.tracing import current_traceparent
from services.deploy import events as deploy
from services.webhooks import catalog
from services.webhooks.decider import (
    DeliveryState,
    WebhookState,
    decide_requeue,
    evolve_delivery,
    evolve_webhook,
)
from services.webhooks.events import CODECS, DeliveryScheduled
from services.webhooks.payloads import DeploymentFacts, PublicEvent, body, facts_of, translate

DELIVERIES = AggregateType("delivery", CODECS["delivery"], DeliveryState(), evolve_delivery)
WEBHOOKS = AggregateType("webhook", CODECS["webhook"], WebhookState(), evolve_webhook)


def delivery_id_for(webhook_id: str, event_id: str) -> str:
    digest = hashlib.sha256(f"{webhook_id}:{event_id}".encode()).digest()
    return "dlv_" + base64.b32encode(digest).decode().rstrip("=").lower()[:24]


def receivers(
    webhooks: Iterable[WebhookState], event: PublicEvent, *, replaying: bool = False
) -> list[WebhookState]:
    """The active endpoints of the event's organization subscribed to it.

    An endpoint receives the events that happened after it was created (a
    replay asks for older ones on purpose), and never the events about itself.
    """
    chosen = []
    for hook in webhooks:
        if not hook.exists or not hook.active or hook.organization_id != event.organization_id:
            continue
        if hook.webhook_id == event.about_webhook:
            continue
        if not replaying and hook.created_at is not None and event.occurred_at < hook.created_at:
            continue
        if catalog.matches(hook.events, event.type):
            chosen.append(hook)
    return chosen


def scheduled_for(hook: WebhookState, event: PublicEvent) -> DeliveryScheduled:
    """The delivery of `event` to `hook`, with the exact body every attempt sends."""
    assert hook.webhook_id is not None
    return DeliveryScheduled(
        delivery_id=delivery_id_for(hook.webhook_id, event.event_id),
        webhook_id=hook.webhook_id,
        organization_id=event.organization_id,
        event_id=event.event_id,
        event_type=event.type,
        body=body(event),
        occurred_at=event.occurred_at,
    )


def delivery_context(event: PublicEvent) -> EventContext:
    """A delivery is caused by its event and goes on with the event's request and trace."""
    return EventContext(
        organization_id=event.organization_id,
        causation_id=event.event_id,
        correlation_id=event.correlation_id,
        traceparent=current_traceparent() or event.traceparent,
    )


async def schedule(
    store: EventStore,
    hook: WebhookState,
    event: PublicEvent,
    *,
    requeue: str | None = None,
    once: bool = False,
    context: EventContext | None = None,
) -> bool:
    """Schedule `event` for `hook`; True if this call scheduled (or requeued) it.

    Already scheduled: nothing happens, unless `requeue` names why it must be
    sent again (a replay), which starts it on a fresh retry schedule; with
    `once`, only if it was not scheduled or requeued for that reason before.
    `context`: who asked, when a person did (a test ping); the event's otherwise.
    """
    scheduled = msgspec.structs.replace(scheduled_for(hook, event), reason=requeue)
    delivery_id = scheduled.delivery_id
    context = context or delivery_context(event)
    try:
        await store.append(
            "delivery",
            delivery_id,
            [scheduled],
            expected_version=0,
            context=context,
        )
        return True
    except ConcurrencyError:
        if requeue is None:
            return False
    state, version = await load_state(store, DELIVERIES, delivery_id)
    events = decide_requeue(state, requeue, once=once)
    if not events:
        return False
    try:
        await store.append(
            "delivery", delivery_id, events, expected_version=version, context=context
        )
    except ConcurrencyError:
        return False
    return True


class Translator:
    """Public events from recorded ones, remembering each deployment's facts.

    The facts (project, service, environment, ref) are in `deployment.created`
    only; a deployment seen first mid-way (after a restart) has its first event
    read back from the stream.
    """

    def __init__(self, store: EventStore, capacity: int = 20_000) -> None:
        self.store = store
        self.capacity = capacity
        self._facts: OrderedDict[str, DeploymentFacts] = OrderedDict()
        self._deployment_codec: EventCodec[Any] = deploy.CODECS["deployment"]

    def _remember(self, facts: DeploymentFacts) -> None:
        self._facts[facts.deployment_id] = facts
        self._facts.move_to_end(facts.deployment_id)
        while len(self._facts) > self.capacity:
            self._facts.popitem(last=False)

    async def facts(self, deployment_id: str) -> DeploymentFacts | None:
        known = self._facts.get(deployment_id)
        if known is not None:
            return known
        stream = self.store.stream_name(deploy.STREAM.context)
        subject = self.store.subject("deployment", deployment_id)
        try:
            msg = await self.store.js.get_msg(
                stream, seq=1, subject=subject, next=True, direct=True
            )
        except nats.js.errors.NotFoundError:
            return None
        meta = meta_from_headers(subject, msg.headers or {}, self.store.namespace)
        event = self._deployment_codec.decode(msg.data or b"", meta.event_type, meta.schema_version)
        found = facts_of(Recorded(meta=meta, event=event, seq=msg.seq or 0))
        if found is not None:
            self._remember(found)
        return found

    async def translate(self, recorded: Recorded[Event]) -> PublicEvent | None:
        facts = None
        if recorded.meta.aggregate == "deployment":
            facts = facts_of(recorded)
            if facts is not None:
                self._remember(facts)
            else:
                facts = await self.facts(recorded.meta.aggregate_id)
        return translate(recorded, facts)
