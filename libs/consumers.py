"""JetStream durable consumers: creating them, pulling from them, keeping work alive.

Every long-running pull loop (the webhooks dispatcher, delivery worker and
replayer, the deploy agent, the projection runner) goes through here, so they
treat an idle fetch, a missing stream, a lost connection and a bug the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from libs.metrics import CONSUMED, CONSUMER_RESTARTS

log = structlog.get_logger("consumers")

MAX_BACKOFF = 30.0


async def pull(sub: JetStreamContext.PullSubscription, batch: int, timeout: float) -> list[Msg]:
    """Up to `batch` messages, or none when nothing arrived within `timeout`.

    An idle fetch is the normal case, not an error. nats-py reports it as its
    own `nats.errors.TimeoutError` on some paths and as the builtin
    `TimeoutError` on others (a lingering request whose deadline passed while
    the no-wait probe was answered); both mean "nothing yet".
    """
    try:
        return await sub.fetch(batch, timeout=timeout)
    except (nats.errors.TimeoutError, TimeoutError):
        return []


async def ensure_durable(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create the durable consumer the first time; later starts (and replicas racing
    to create it) find it and resume where it was."""
    name = config.durable_name
    assert name, "a durable consumer needs a name"
    try:
        await js.consumer_info(stream, name)
        return
    except nats.js.errors.NotFoundError:
        pass
    try:
        await js.add_consumer(stream, config)
    except nats.js.errors.BadRequestError:
        # Another replica created it between our look and our add: fine if it is there.
        await js.consumer_info(stream, name)


@contextlib.asynccontextmanager
async def in_progress(msg: Msg, every: float) -> AsyncIterator[None]:
    """Tell JetStream every `every` seconds that `msg` is still being worked on, so
    work longer than the ack wait is not handed to someone else meanwhile."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(nats.errors.Error):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


Handler = Callable[[list[Msg]], Awaitable[None]]


class _StreamMissing(Exception):
    pass


class DurableConsumer:
    """Runs `handle` on each batch pulled from a durable consumer until `stop` is set.

    The consumer is created once (`ensure_durable`) and resumed on every start.
    A stream that does not exist yet (another context's, not started) is waited
    for quietly; a lost connection or timeout is retried with backoff at info
    level; anything else is logged with its traceback and retried with backoff.
    `handle` acknowledges (or naks, with a delay) the messages itself: it knows
    when their work is done. A message it leaves unacknowledged is handed out
    again after the consumer's ack wait.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        *,
        batch: int = 256,
        fetch_timeout: float = 1.0,
        retry_interval: float = 1.0,
    ) -> None:
        assert config.durable_name, "a durable consumer needs a name"
        self.js = js
        self.stream = stream
        self.config = config
        self.name: str = config.durable_name
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.retry_interval = retry_interval
        self._pulled = False

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._consume(handle, stop)
                return
            except asyncio.CancelledError:
                raise
            except _StreamMissing:
                failures = 0
                await _sleep_or_stop(stop, 0.5)  # another context's, not started yet
                continue
            except (OSError, nats.errors.Error) as exc:
                log.info("consumer_retrying", consumer=self.name, error=type(exc).__name__)
            except Exception:
                log.exception("consumer_failed", consumer=self.name)
            CONSUMER_RESTARTS.labels(self.name).inc()
            if self._pulled:  # it ran for a while: this failure is a new one
                failures, self._pulled = 0, False
            await _sleep_or_stop(stop, min(MAX_BACKOFF, self.retry_interval * 2**failures))
            failures += 1

    async def _consume(self, handle: Handler, stop: asyncio.Event) -> None:
        try:
            await ensure_durable(self.js, self.stream, self.config)
            sub = await self.js.pull_subscribe_bind(durable=self.name, stream=self.stream)
        except nats.js.errors.NotFoundError:
            raise _StreamMissing from None
        try:
            while not stop.is_set():
                msgs = await pull(sub, self.batch, self.fetch_timeout)
                self._pulled = True
                if msgs:
                    CONSUMED.labels(self.name).inc(len(msgs))
                    await handle(msgs)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
