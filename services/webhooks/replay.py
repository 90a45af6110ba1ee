"""Replay: re-send to one endpoint every matching event since a time.

The durable log makes it possible: a temporary consumer reads each source
stream from `since` up to the moment the replay was asked for, and every
event the endpoint subscribes to is scheduled again (an event it was already
sent keeps its delivery and `webhook-id`, and is requeued).

A replay is carried out from its `webhook.replay_requested` event, which a
durable consumer hands to one replica and which is acknowledged only when the
replay is done: a replay interrupted by a crash is handed out again (within
ACK_WAIT) and resumed. Each delivery is requeued at most once per replay, so
the resumed run skips what the interrupted one did.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.aggregate import load_state
from libs.consumers import DurableConsumer, ensure_durable, in_progress, pull
from libs.events import H_EVENT_TYPE, meta_from_headers
from libs.eventstore import EventStore
from services.webhooks import decider as d
from services.webhooks.dispatcher import SOURCES, decode
from services.webhooks.events import CODECS, ENDPOINTS, WebhookReplayRequested
from services.webhooks.fanout import WEBHOOKS, Translator, receivers, schedule

log = structlog.get_logger("webhooks.replay")

DURABLE = "webhooks_replay"
# A replica that stops reporting progress on a replay for this long is taken for
# dead, and the replay is handed to another (or to itself, restarted).
ACK_WAIT = 10.0
HEARTBEAT = 3.0


class Replayer:
    def __init__(self, store: EventStore, *, batch: int = 256, concurrency: int = 4) -> None:
        self.store = store
        self.batch = batch
        self.translator = Translator(store)
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        store.register(ENDPOINTS)

    def _consumer(self) -> DurableConsumer:
        return DurableConsumer(
            self.store.js,
            self.store.stream_name(ENDPOINTS.context),
            ConsumerConfig(
                durable_name=DURABLE,
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT,
                max_ack_pending=1024,
            ),
            batch=16,
        )

    async def prepare(self) -> None:
        """Create the durable consumer (once, before replays can be requested): from
        then on no request is missed, and none from before it is re-run."""
        consumer = self._consumer()
        await ensure_durable(consumer.js, consumer.stream, consumer.config)

    async def run(self, stop: asyncio.Event) -> None:
        await self._consumer().run(self._take, stop)
        await self.stop()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _take(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            if (msg.headers or {}).get(H_EVENT_TYPE) != "webhook.replay_requested":
                await msg.ack()
                continue
            await self._slots.acquire()
            task = asyncio.create_task(self._carry_out(msg))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _carry_out(self, msg: Msg) -> None:
        async with in_progress(msg, HEARTBEAT):
            await self._carry_out_in_progress(msg)

    async def _carry_out_in_progress(self, msg: Msg) -> None:
        try:
            meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
            event = CODECS["webhook"].decode(msg.data, meta.event_type, meta.schema_version)
            assert isinstance(event, WebhookReplayRequested)
            hook, _ = await load_state(self.store, WEBHOOKS, meta.aggregate_id)
            # Up to when the request was stored, by the same (server) clock as the events.
            until = msg.metadata.timestamp
            await self.replay(event.replay_id, hook, event.since, until=until)
            await msg.ack()
        except Exception:
            # Unacknowledged: handed out again after ACK_WAIT, and resumed.
            log.exception("replay_failed", subject=msg.subject)

    async def replay(
        self, replay_id: str, hook: d.WebhookState, since: datetime, *, until: datetime
    ) -> int:
        """Schedule the endpoint's events recorded from `since` to `until`; how many were
        (re)scheduled by this call."""
        scheduled = 0
        reason = f"replay {replay_id}"
        for spec, codecs in SOURCES:
            stream = self.store.stream_name(spec.context)
            last = await self.store.last_sequence(spec.context)
            if last == 0:
                continue
            consumer = f"{replay_id}_{spec.context}"
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.store.js.delete_consumer(stream, consumer)  # an interrupted run's
            await self.store.js.add_consumer(
                stream,
                ConsumerConfig(
                    durable_name=consumer,
                    deliver_policy=DeliverPolicy.BY_START_TIME,
                    opt_start_time=since,
                    ack_policy=AckPolicy.NONE,
                    inactive_threshold=60,
                ),
            )
            sub = await self.store.js.pull_subscribe_bind(durable=consumer, stream=stream)
            try:
                position = 0
                while position < last:
                    msgs = await pull(sub, self.batch, 1.0)
                    if not msgs:
                        break  # nothing (more) at or after `since`
                    for msg in msgs:
                        position = msg.metadata.sequence.stream
                        if position > last or msg.metadata.timestamp > until:
                            position = last
                            break
                        recorded = decode(msg, codecs, self.store.namespace)
                        if recorded is None:
                            continue
                        public = await self.translator.translate(recorded)
                        if public is None or not receivers([hook], public, replaying=True):
                            continue
                        if await schedule(self.store, hook, public, requeue=reason, once=True):
                            scheduled += 1
            finally:
                await sub.unsubscribe()
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await self.store.js.delete_consumer(stream, consumer)
        log.info(
            "replay_done", replay_id=replay_id, webhook_id=hook.webhook_id, scheduled=scheduled
        )
        return scheduled
