"""The dispatcher: every event of the contexts that publish becomes the deliveries it owes.

One durable consumer per source stream, shared by every replica. An event is
acknowledged only once each of its deliveries is recorded on the deliveries
stream; a crash before that redelivers it, and the derived delivery ids make
recording it again a no-op.

Most deliveries are made *promptly*: where the endpoint's lane is healthy and
its line short, the dispatcher makes the first attempt itself and then
records the delivery with that attempt in one `delivery.scheduled`. The
receiver hears of the event without waiting for any append of ours, and a
delivery costs one fsynced append instead of two. Everywhere else (a failing
or slow endpoint, a redelivered event that may have been attempted already)
the delivery is only recorded, and the delivery worker makes its attempts.
A crash between a prompt attempt and its record repeats that attempt once,
with the same `webhook-id`: the at-least-once the issue allows for attempts in
flight.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace

from libs.consumers import DurableConsumer
from libs.events import Event, EventCodec, Recorded, meta_from_headers
from libs.eventstore import ConcurrencyError, EventStore, StreamSpec
from libs.tracing import continued
from services.deploy import events as deploy
from services.domains import events as domains
from services.drift import events as drift
from services.webhooks import decider as d
from services.webhooks import events as hooks
from services.webhooks.courier import PROMPT_WAIT_SECONDS, Courier
from services.webhooks.directory import Directory
from services.webhooks.fanout import (
    Translator,
    delivery_context,
    receivers,
    schedule,
    scheduled_for,
)
from services.webhooks.payloads import PublicEvent

log = structlog.get_logger("webhooks.dispatcher")
tracer = trace.get_tracer("deployforge.webhooks")

# The streams whose events are delivered, and the aggregates in them that matter.
SOURCES: tuple[tuple[StreamSpec, dict[str, EventCodec[Event]]], ...] = (
    (
        deploy.STREAM,
        {
            k: v
            for k, v in deploy.CODECS.items()
            if k in ("deployment", "project", "service", "environment")
        },
    ),
    (domains.STREAM, {k: domains.CODECS[k] for k in ("domain", "certificate")}),
    (drift.STREAM, {k: drift.CODECS[k] for k in ("resource", "scan", "finding")}),
    (hooks.ENDPOINTS, {"webhook": hooks.CODECS["webhook"]}),
)
DURABLE = "webhooks_dispatch"


def decode(msg: Msg, codecs: dict[str, EventCodec[Any]], namespace: str) -> Recorded[Event] | None:
    meta = meta_from_headers(msg.subject, msg.headers or {}, namespace)
    codec = codecs.get(meta.aggregate)
    if codec is None:
        return None
    event = codec.decode(msg.data, meta.event_type, meta.schema_version)
    return Recorded(meta=meta, event=event, seq=msg.metadata.sequence.stream)


class Dispatcher:
    def __init__(
        self,
        store: EventStore,
        directory: Directory,
        courier: Courier,
        *,
        batch: int = 256,
        in_flight: int = 1024,
    ) -> None:
        self.store = store
        self.directory = directory
        self.courier = courier
        self.translator = Translator(store)
        self.batch = batch
        self._in_flight = asyncio.Semaphore(in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._follow(spec, codecs, stop)) for spec, codecs in SOURCES]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        # Prompt attempts under way finish and are recorded before the connections close;
        # one that does not finish in time is redelivered to whoever runs next.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _follow(
        self, spec: StreamSpec, codecs: dict[str, EventCodec[Event]], stop: asyncio.Event
    ) -> None:
        # Another context's stream is its owner's to create: the consumer waits for it.
        self.store.register(spec)
        consumer = DurableConsumer(
            self.store.js,
            self.store.stream_name(spec.context),
            ConsumerConfig(
                durable_name=DURABLE,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=4096,
            ),
            batch=self.batch,
        )

        async def handle(msgs: list[Msg]) -> None:
            await self.directory.sync()
            # The next batch is fetched while this one is under way: each message is
            # acknowledged as soon as its own deliveries are recorded.
            for msg in msgs:
                await self._in_flight.acquire()
                task = asyncio.create_task(self._dispatch(msg, codecs))
                self._tasks.add(task)
                task.add_done_callback(self._done)

        await consumer.run(handle, stop)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight.release()

    async def _dispatch(self, msg: Msg, codecs: dict[str, EventCodec[Event]]) -> None:
        try:
            recorded = decode(msg, codecs, self.store.namespace)
            public = await self.translator.translate(recorded) if recorded else None
            if public is not None:
                hooks_ = receivers(self.directory.of_organization(public.organization_id), public)
                if hooks_:
                    # A redelivered event may have been attempted already: record only.
                    first_time = msg.metadata.num_delivered == 1
                    with (
                        continued(tracer, f"fan out {public.type}", public.traceparent),
                        structlog.contextvars.bound_contextvars(
                            correlation_id=public.correlation_id
                        ),
                    ):
                        await asyncio.gather(
                            *(self._deliver(h, public, first_time) for h in hooks_)
                        )
            await msg.ack()
        except Exception:
            # Unacknowledged: redelivered after the ack wait, and scheduling is idempotent.
            log.exception("dispatch_failed", subject=msg.subject)

    async def _deliver(self, hook: d.WebhookState, public: PublicEvent, first_time: bool) -> None:
        if not (first_time and self.courier.prompt(hook)):
            await schedule(self.store, hook, public)
            return
        scheduled = scheduled_for(hook, public)
        outcome = await self.courier.send_within(
            hook, scheduled.delivery_id, scheduled.body, PROMPT_WAIT_SECONDS
        )
        if outcome is None:  # the lane is busier than it looked: the worker's job
            await schedule(self.store, hook, public)
            return
        events = d.decide_prompt(
            scheduled,
            outcome,
            self.courier.policy.schedule,
            jitter=random.uniform(-1.0, 1.0),  # noqa: S311 (jitter)
        )
        try:
            await self.store.append(
                "delivery",
                scheduled.delivery_id,
                events,
                expected_version=0,
                context=delivery_context(public),
            )
        except ConcurrencyError:
            pass  # recorded already: an earlier dispatch of this event got that far
        await self.courier.record_health(hook, outcome)
