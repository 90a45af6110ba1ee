"""The delivery worker: attempts deliveries, records each attempt, schedules the next.

It follows the deliveries stream with one durable consumer shared by every
replica. An event that asks for an attempt (`delivery.scheduled` without a first
attempt, `delivery.requeued`, or a failed attempt whose retry is due) is
acknowledged only after the attempt's outcome is appended, so a crash repeats
at most the attempts that were in flight. A retry not yet due is handed back
to JetStream with a delay (`nak` with delay): the schedule lives in the stream,
not in this process.

Attempts go through the courier's per-endpoint lanes; a lane that is full
hands new work back with a delay instead of holding it, so a slow or dead
endpoint never holds up the others' deliveries.
Order per endpoint is not guaranteed (retries overtake nothing and are
overtaken by newer events); receivers order by `timestamp` and dedupe by
`webhook-id`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace

from libs.aggregate import load_state
from libs.consumers import DurableConsumer
from libs.events import H_EVENT_TYPE, EventContext, Recorded, meta_from_headers
from libs.eventstore import ConcurrencyError, EventStore
from libs.tracing import continued, current_traceparent
from services.webhooks import decider as d
from services.webhooks.courier import ACTOR, Courier
from services.webhooks.directory import Directory
from services.webhooks.events import (
    CODECS,
    DELIVERIES,
    DeliveryExhausted,
)
from services.webhooks.fanout import DELIVERIES as DELIVERY_KIND
from services.webhooks.fanout import receivers, schedule
from services.webhooks.payloads import translate

log = structlog.get_logger("webhooks.delivery")
tracer = trace.get_tracer("deployforge.webhooks")

DURABLE = "webhooks_delivery"


class _Due(msgspec.Struct):
    """Of an attempt, only what routing needs: when the next one is due."""

    next_attempt_at: datetime | None = None


class _Scheduled(msgspec.Struct):
    first_attempt: _Due | None = None


# Routing reads every delivery event; these skip the body and everything else.
_SCHEDULED = msgspec.json.Decoder(_Scheduled)
_ATTEMPTED = msgspec.json.Decoder(_Due)


class DeliveryWorker:
    def __init__(
        self,
        store: EventStore,
        directory: Directory,
        courier: Courier,
        *,
        batch: int = 256,
    ) -> None:
        self.store = store
        self.directory = directory
        self.courier = courier
        self.batch = batch
        self._tasks: set[asyncio.Task[None]] = set()
        store.register(DELIVERIES)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = DurableConsumer(
            self.store.js,
            self.store.stream_name(DELIVERIES.context),
            ConsumerConfig(
                durable_name=DURABLE,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=90,
                # Retries waiting for their time count as pending: leave room for many.
                max_ack_pending=1_000_000,
            ),
            batch=self.batch,
        )

        async def handle(msgs: list[Msg]) -> None:
            for msg in msgs:
                await self._route(msg)

        await consumer.run(handle, stop)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _route(self, msg: Msg) -> None:
        """Decide quickly what a message needs; anything slow runs in a task of its own."""
        kind = (msg.headers or {}).get(H_EVENT_TYPE, "")
        due: _Due | None = None
        if kind == "delivery.scheduled":
            due = _SCHEDULED.decode(msg.data).first_attempt
            if due is None:  # no attempt yet: make the first
                self._spawn(self._guarded(self._attempt, msg))
                return
        elif kind == "delivery.attempted":
            due = _ATTEMPTED.decode(msg.data)
        if kind == "delivery.requeued":
            self._spawn(self._guarded(self._attempt, msg))
        elif due is not None:
            if due.next_attempt_at is None:
                await msg.ack()
                return
            wait = (due.next_attempt_at - datetime.now(UTC)).total_seconds()
            if wait > 0.001:
                await msg.nak(delay=wait)
                return
            self._spawn(self._guarded(self._attempt, msg))
        elif kind == "delivery.exhausted":
            self._spawn(self._guarded(self._announce_exhausted, msg))
        else:
            await msg.ack()

    async def _guarded(self, work: Any, msg: Msg) -> None:
        try:
            await work(msg)
        except Exception:
            # Left unacknowledged: JetStream redelivers it after the ack wait.
            log.exception("delivery_step_failed", subject=msg.subject)

    async def _attempt(self, msg: Msg) -> None:
        recorded = self._decode(msg)
        meta = recorded.meta
        with (
            continued(tracer, f"deliver after {meta.event_type}", meta.traceparent),
            structlog.contextvars.bound_contextvars(correlation_id=meta.correlation_id),
        ):
            await self._attempt_traced(msg, recorded)

    async def _attempt_traced(self, msg: Msg, recorded: Recorded[Any]) -> None:
        seq = recorded.seq
        if recorded.meta.event_type == "delivery.scheduled" and msg.metadata.num_delivered == 1:
            state, version = d.evolve_delivery(d.DeliveryState(), recorded.event), seq
        else:
            state, version = await load_state(self.store, DELIVERY_KIND, recorded.meta.aggregate_id)
            if version != seq:
                await msg.ack()  # something happened since: that later event drives it
                return
        if state.status in d.FINAL:
            await msg.ack()
            return
        hook = self.directory.get(state.webhook_id)
        if hook is None:
            await self.directory.sync()
            hook = self.directory.get(state.webhook_id)
        # A test ping reaches a disabled endpoint too: that is how one checks it.
        pinging = state.event_type == "webhook.ping"
        if hook is None or not hook.exists or not (hook.active or pinging):
            reason = (
                "the webhook was deleted"
                if hook is None or hook.deleted
                else "the webhook is disabled"
            )
            await self._append(state, version, d.decide_abandon(state, reason), recorded)
            await msg.ack()
            return
        if self.courier.lane(hook).full:
            await msg.nak(delay=random.uniform(1.0, 3.0))  # noqa: S311 (jitter)
            return
        assert state.delivery_id is not None
        outcome = await self.courier.send(hook, state.delivery_id, state.body)
        events = d.decide_outcome(
            state,
            outcome,
            self.courier.policy.schedule,
            jitter=random.uniform(-1.0, 1.0),  # noqa: S311 (jitter)
        )
        await self._append(state, version, events, recorded)
        await self.courier.record_health(hook, outcome)
        await msg.ack()

    def _decode(self, msg: Msg) -> Recorded[Any]:
        meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
        event = CODECS["delivery"].decode(msg.data, meta.event_type, meta.schema_version)
        return Recorded(meta=meta, event=event, seq=msg.metadata.sequence.stream)

    async def _append(
        self,
        state: d.DeliveryState,
        version: int,
        events: Sequence[Any],
        cause: Recorded[Any],
    ) -> None:
        if not events:
            return
        assert state.delivery_id is not None
        context = EventContext(
            actor=ACTOR,
            organization_id=state.organization_id,
            correlation_id=cause.meta.correlation_id,
            causation_id=cause.meta.event_id,
            traceparent=current_traceparent(),
        )
        try:
            await self.store.append(
                "delivery", state.delivery_id, events, expected_version=version, context=context
            )
        except ConcurrencyError:
            # A redeliver or another replica moved it on; that event drives what follows.
            pass

    async def _announce_exhausted(self, msg: Msg) -> None:
        """`webhook.delivery_exhausted` to the organization's other subscribed endpoints."""
        recorded = self._decode(msg)
        if isinstance(recorded.event, DeliveryExhausted):
            public = translate(recorded, None)
            if public is not None:
                await self.directory.sync()
                hooks = receivers(self.directory.of_organization(public.organization_id), public)
                await asyncio.gather(*(schedule(self.store, hook, public) for hook in hooks))
        await msg.ack()
