"""The delivery worker: attempts deliveries, records each attempt, schedules the next.

It follows the deliveries stream with one durable consumer shared by every
replica. An event that asks for an attempt (`delivery.scheduled`,
`delivery.requeued`, or a failed `delivery.attempted` whose retry is due) is
acknowledged only after the attempt's outcome is appended, so a crash repeats
at most the attempts that were in flight. A retry not yet due is handed back
to JetStream with a delay (`nak` with delay): the schedule lives in the stream,
not in this process.

Each endpoint has a lane: its own concurrency and rate limit, and a short
waiting line. A lane that is full hands new work back with a delay instead of
holding it, so a slow or dead endpoint never holds up the others' deliveries.
Order per endpoint is not guaranteed (retries overtake nothing and are
overtaken by newer events); receivers order by `timestamp` and dedupe by
`webhook-id`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.aggregate import load_state
from libs.crypto import SecretBox
from libs.events import H_EVENT_TYPE, EventContext, Recorded, meta_from_headers
from libs.eventstore import ConcurrencyError, EventStore
from libs.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from services.webhooks import decider as d
from services.webhooks import signing
from services.webhooks.directory import Directory
from services.webhooks.events import CODECS, DELIVERIES, DeliveryAttempted, DeliveryExhausted
from services.webhooks.fanout import DELIVERIES as DELIVERY_KIND
from services.webhooks.fanout import receivers, schedule
from services.webhooks.payloads import translate
from services.webhooks.sender import Sender

log = structlog.get_logger("webhooks.delivery")

DURABLE = "webhooks_delivery"
SECRET_PURPOSE = "webhook-secret"
ACTOR = "system:webhooks"


class DeliveryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    schedule: tuple[float, ...]
    # An endpoint whose every attempt failed for this long is disabled.
    disable_after: timedelta
    concurrency: int = 8
    # Deliveries per second per endpoint when the endpoint sets none (None: no limit).
    default_rate_limit: int | None = None


# A message waits in a lane's line for about this long at most (well inside the
# consumer's ack wait); beyond that it goes back to the stream for a while.
LINE_SECONDS = 20.0


class Lane:
    """One endpoint's share of the worker: concurrency, pace and a waiting line whose
    length follows how fast the endpoint answers."""

    def __init__(self, concurrency: int, rate_limit: int | None) -> None:
        self.concurrency = concurrency
        self.rate_limit = rate_limit
        self.slots = asyncio.Semaphore(concurrency)
        self.waiting = 0
        # Recent seconds per attempt (moving average), from a cautious start.
        self.latency = 0.1
        self._next_start = 0.0

    @property
    def capacity(self) -> int:
        """How many may wait: as many as the endpoint gets through in LINE_SECONDS."""
        per_second = self.concurrency / max(self.latency, 0.001)
        if self.rate_limit:
            per_second = min(per_second, self.rate_limit)
        return max(self.concurrency, min(10_000, int(per_second * LINE_SECONDS)))

    @property
    def full(self) -> bool:
        return self.waiting >= self.capacity

    def observe(self, seconds: float) -> None:
        self.latency = 0.8 * self.latency + 0.2 * seconds

    async def __aenter__(self) -> None:
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        if self.rate_limit:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.rate_limit
            if start > now:
                await asyncio.sleep(start - now)

    async def __aexit__(self, *_: object) -> None:
        self.slots.release()


class DeliveryWorker:
    def __init__(
        self,
        store: EventStore,
        directory: Directory,
        box: SecretBox,
        sender: Sender,
        policy: DeliveryPolicy,
        *,
        batch: int = 256,
    ) -> None:
        self.store = store
        self.directory = directory
        self.box = box
        self.sender = sender
        self.policy = policy
        self.batch = batch
        self._lanes: dict[str, Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._secrets: dict[str, str] = {}
        store.register(DELIVERIES)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery_worker_restarting")
                await asyncio.sleep(1)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _run_once(self, stop: asyncio.Event) -> None:
        stream = self.store.stream_name(DELIVERIES.context)
        await self.store.ensure_durable(
            DELIVERIES.context,
            ConsumerConfig(
                durable_name=DURABLE,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=90,
                # Retries waiting for their time count as pending: leave room for many.
                max_ack_pending=1_000_000,
            ),
        )
        sub = await self.store.js.pull_subscribe_bind(durable=DURABLE, stream=stream)
        try:
            while not stop.is_set():
                try:
                    msgs: list[Msg] = await sub.fetch(self.batch, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                for msg in msgs:
                    await self._route(msg)
        finally:
            await sub.unsubscribe()

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _route(self, msg: Msg) -> None:
        """Decide quickly what a message needs; anything slow runs in a task of its own."""
        kind = (msg.headers or {}).get(H_EVENT_TYPE, "")
        if kind in ("delivery.scheduled", "delivery.requeued"):
            self._spawn(self._guarded(self._attempt, msg))
        elif kind == "delivery.attempted":
            attempted = msgspec.json.decode(msg.data, type=DeliveryAttempted)
            if attempted.next_attempt_at is None:
                await msg.ack()
                return
            wait = (attempted.next_attempt_at - datetime.now(UTC)).total_seconds()
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
            await self._append(state, version, d.decide_abandon(state, reason))
            await msg.ack()
            return
        lane = self._lane(hook)
        if lane.full:
            await msg.nak(delay=random.uniform(1.0, 3.0))  # noqa: S311 (jitter)
            return
        async with lane:
            outcome = await self._send(hook, state)
        lane.observe(outcome.latency_ms / 1000)
        events = d.decide_outcome(
            state,
            outcome,
            self.policy.schedule,
            jitter=random.uniform(-1.0, 1.0),  # noqa: S311 (jitter)
        )
        await self._append(state, version, events)
        await self._endpoint_health(hook, outcome)
        await msg.ack()

    def _decode(self, msg: Msg) -> Recorded[Any]:
        meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
        event = CODECS["delivery"].decode(msg.data, meta.event_type, meta.schema_version)
        return Recorded(meta=meta, event=event, seq=msg.metadata.sequence.stream)

    def _lane(self, hook: d.WebhookState) -> Lane:
        assert hook.webhook_id is not None
        rate = hook.rate_limit or self.policy.default_rate_limit
        lane = self._lanes.get(hook.webhook_id)
        if lane is None or lane.rate_limit != rate:
            lane = Lane(self.policy.concurrency, rate)
            self._lanes[hook.webhook_id] = lane
        return lane

    def _open(self, sealed: str) -> str:
        secret = self._secrets.get(sealed)
        if secret is None:
            secret = self.box.open(sealed, purpose=SECRET_PURPOSE).decode()
            self._secrets[sealed] = secret
        return secret

    async def _send(self, hook: d.WebhookState, state: d.DeliveryState) -> d.Outcome:
        now = datetime.now(UTC)
        assert state.delivery_id is not None
        body = state.body.encode()
        secrets = [self._open(s) for s in hook.secrets_at(now)]
        headers = signing.headers(secrets, state.delivery_id, int(now.timestamp()), body)
        outcome = await self.sender.post(hook.url, headers, body)
        WEBHOOK_ATTEMPTS.labels("success" if outcome.succeeded else "failure").inc()
        WEBHOOK_LATENCY.observe(outcome.latency_ms / 1000)
        if not outcome.succeeded:
            log.info(
                "delivery_attempt_failed",
                delivery_id=state.delivery_id,
                webhook_id=hook.webhook_id,
                status_code=outcome.status_code,
                error=outcome.error,
            )
        return outcome

    async def _append(self, state: d.DeliveryState, version: int, events: Sequence[Any]) -> None:
        if not events:
            return
        assert state.delivery_id is not None
        try:
            await self.store.append(
                "delivery",
                state.delivery_id,
                events,
                expected_version=version,
                context=EventContext(actor=ACTOR, organization_id=state.organization_id),
            )
        except ConcurrencyError:
            # A redeliver or another replica moved it on; that event drives what follows.
            pass

    async def _endpoint_health(self, hook: d.WebhookState, outcome: d.Outcome) -> None:
        if outcome.succeeded:
            events = d.decide_attempt_succeeded(hook)
        elif outcome.gone:
            events = d.decide_gone(hook)
        else:
            events = d.decide_attempt_failed(hook, outcome.attempted_at, self.policy.disable_after)
        if not events:
            return
        assert hook.webhook_id is not None
        try:
            await self.store.append(
                "webhook",
                hook.webhook_id,
                events,
                expected_version=self.directory.version(hook.webhook_id),
                context=EventContext(actor=ACTOR, organization_id=hook.organization_id),
            )
        except ConcurrencyError:
            pass  # the directory was behind; the next attempt decides again

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
