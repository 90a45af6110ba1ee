"""Replay: re-send to one endpoint every matching event since a time.

The durable log makes it possible: a temporary consumer reads each source
stream from `since` up to where the stream was when the replay was asked for,
and every event the endpoint subscribes to is scheduled again (an event it
was already sent keeps its delivery and `webhook-id`, and is requeued).

A replay runs in the service that accepted it; one interrupted by a crash is
not resumed (the request is recorded as `webhook.replay_requested`): asking
again is safe, receivers dedupe by `webhook-id`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import nats.errors
import nats.js.errors
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.eventstore import EventStore
from services.webhooks.decider import WebhookState
from services.webhooks.dispatcher import SOURCES, decode
from services.webhooks.fanout import Translator, receivers, schedule

log = structlog.get_logger("webhooks.replay")


class Replayer:
    def __init__(self, store: EventStore, *, batch: int = 256) -> None:
        self.store = store
        self.batch = batch
        self.translator = Translator(store)
        self._tasks: set[asyncio.Task[int]] = set()

    def start(self, replay_id: str, hook: WebhookState, since: datetime) -> asyncio.Task[int]:
        task = asyncio.create_task(self.run(replay_id, hook, since))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def run(self, replay_id: str, hook: WebhookState, since: datetime) -> int:
        """Schedule the endpoint's events since `since`; how many were (re)scheduled."""
        scheduled = 0
        try:
            for spec, codecs in SOURCES:
                stream = self.store.stream_name(spec.context)
                last = await self.store.last_sequence(spec.context)
                if last == 0:
                    continue
                consumer = f"{replay_id}_{spec.context}"
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
                        try:
                            msgs = await sub.fetch(self.batch, timeout=1.0)
                        except (nats.errors.TimeoutError, TimeoutError):
                            break  # nothing at or after `since`
                        for msg in msgs:
                            position = msg.metadata.sequence.stream
                            if position > last:
                                break
                            recorded = decode(msg, codecs, self.store.namespace)
                            if recorded is None:
                                continue
                            public = await self.translator.translate(recorded)
                            if public is None or not receivers([hook], public, replaying=True):
                                continue
                            if await schedule(self.store, hook, public, requeue="replay"):
                                scheduled += 1
                finally:
                    await sub.unsubscribe()
                    try:
                        await self.store.js.delete_consumer(stream, consumer)
                    except nats.js.errors.NotFoundError:
                        pass
        except Exception:
            log.exception("replay_failed", replay_id=replay_id, webhook_id=hook.webhook_id)
            raise
        log.info(
            "replay_done", replay_id=replay_id, webhook_id=hook.webhook_id, scheduled=scheduled
        )
        return scheduled
