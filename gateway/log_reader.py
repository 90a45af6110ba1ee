"""Reading one subject of the log stream: its stored lines, or followed live.

Lines are read from the log stream (services/deploy/logs.py) with an ordered
consumer filtered to the subject (a deployment's, or a service's, whose lines
each name the instance that printed them). A `LogWindow` keeps the lines of a
time range or of one instance. Following sends the tail, then every new line
(`event: log`, its stream sequence as the SSE id, so a client that reconnects
with `Last-Event-ID` resumes where it was) and, for a deployment, every status
change (`event: status`), and ends with `event: end` once the deployment has
ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from datetime import datetime
from typing import Any, Literal

import msgspec
import nats.js.errors
import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from gateway.routes.deployments import Deployment
from gateway.routes.live import (
    LiveEvent,
    close_subscription,
    deployment_events,
    describe,
    failure_reason,
    response_headers,
)
from services.deploy import logs
from services.deploy.status import TERMINAL

log = structlog.get_logger("gateway.logs")

MAX_TAIL = 10_000
# With nothing to send, a comment line this often keeps proxies from closing
# the stream and shows whether the client is still there.
KEEPALIVE_SECONDS = 15.0
# How long a follower waits, once the deployment ended, for lines still on their way.
DRAIN_SECONDS = 2.0
# Reading stored lines: the longest wait for the next one before giving up.
READ_TIMEOUT = 5.0
_STREAM_NOT_FOUND = 10059


class LogWindow(msgspec.Struct, frozen=True, kw_only=True):
    """Which lines of a subject to keep: by their `ts`, and by who printed them."""

    since: datetime | None = None
    until: datetime | None = None
    # On a service's subject, the instance that printed the line, and its environment.
    step: str | None = None
    environment_id: str | None = None

    def keeps(self, line: logs.LogLine) -> bool:
        if self.step is not None and line.step != self.step:
            return False
        if self.environment_id is not None and line.environment_id != self.environment_id:
            return False
        if self.since is not None and line.ts < self.since:
            return False
        return self.until is None or line.ts <= self.until


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    status: str
    # The step the change is about and its state, as in the WebSocket's events.
    step: str | None
    state: str | None
    event: str | None = None
    reason: str | None = None


_encoder = msgspec.json.Encoder()
Source = Literal["log", "event"]


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    # JSON escapes line breaks, so the data is always one `data:` line.
    return head.encode() + b"data: " + _encoder.encode(data) + b"\n\n"


async def _last_seq(js: JetStreamContext, stream: str, subject: str) -> int | None:
    """The stream sequence of the subject's last message: 0 if none, None without a stream."""
    try:
        return (await js.get_last_msg(stream, subject)).seq or 0
    except nats.js.errors.NotFoundError as exc:
        return None if exc.err_code == _STREAM_NOT_FOUND else 0


async def _first_seq_since(js: JetStreamContext, stream: str, subject: str, since: datetime) -> int:
    """The stream sequence from which the subject's messages are stored at `since` or later."""
    # The server finds it: a consumer starting at that time reports where it starts.
    info = await js.add_consumer(
        stream,
        ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=since,
            filter_subject=subject,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=10.0,
        ),
    )
    with contextlib.suppress(nats.js.errors.Error):
        await js.delete_consumer(stream, info.name)
    return (info.delivered.stream_seq if info.delivered else 0) + 1


class LogReader:
    """The log lines and, when following, the events of one deployment, in one queue."""

    def __init__(
        self,
        js: JetStreamContext,
        namespace: str,
        deployment_id: str,
        *,
        with_events: bool = True,
        window: LogWindow | None = None,
    ) -> None:
        self.js = js
        self.window = window or LogWindow()
        # A service's log has no deployment events to follow.
        self.with_events = with_events
        self.namespace = namespace
        self.deployment_id = deployment_id
        self.stream = logs.stream_name(namespace)
        self.subject = logs.subject(namespace, deployment_id)
        self.events_stream, store = deployment_events(js, namespace)
        self.events_subject = store.subject("deployment", deployment_id)
        # Bounded: a slow client holds back delivery (flow control), not memory.
        self.queue: asyncio.Queue[tuple[Source, Msg]] = asyncio.Queue(maxsize=512)
        self.subs: list[JetStreamContext.PushSubscription] = []
        self.last_seq: int | None = None
        self.delivered_seq = 0

    async def open(self, *, start_seq: int = 1, follow: bool = False) -> None:
        """Subscribe; the lines stored until now end at `last_seq`."""
        if follow and self.with_events:
            # The deployment's last event first: it ended if that is a terminal one,
            # even when the read model has not caught up yet.
            await self._subscribe(
                "event", self.events_stream, self.events_subject, DeliverPolicy.LAST_PER_SUBJECT
            )
        self.last_seq = await _last_seq(self.js, self.stream, self.subject)
        if self.last_seq is None:
            log.warning("log_stream_missing", stream=self.stream)
            return
        if self.window.since is not None and start_seq == 1:
            # Skip what came before, rather than read it only to drop it.
            start_seq = await _first_seq_since(
                self.js, self.stream, self.subject, self.window.since
            )
        self.delivered_seq = start_seq - 1
        if self.last_seq >= start_seq or follow:
            await self._subscribe(
                "log",
                self.stream,
                self.subject,
                DeliverPolicy.BY_START_SEQUENCE,
                start_seq=start_seq,
            )

    async def _subscribe(
        self,
        source: Source,
        stream: str,
        subject: str,
        policy: DeliverPolicy,
        start_seq: int | None = None,
    ) -> None:
        async def enqueue(msg: Msg) -> None:
            await self.queue.put((source, msg))

        config = ConsumerConfig(deliver_policy=policy, opt_start_seq=start_seq)
        self.subs.append(
            await self.js.subscribe(
                subject, stream=stream, cb=enqueue, ordered_consumer=True, config=config
            )
        )

    async def close(self) -> None:
        subs, self.subs = self.subs, []
        for sub in subs:
            await close_subscription(self.js, sub)

    def line(self, msg: Msg) -> tuple[int, logs.LogLine] | None:
        """The message's line, if it is readable and in the window."""
        seq = msg.metadata.sequence.stream
        self.delivered_seq = max(self.delivered_seq, seq)
        try:
            line = logs.decode_line(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("unreadable_log_line", subject=msg.subject, seq=seq)
            return None
        return (seq, line) if self.window.keeps(line) else None

    def caught_up(self, upto: int | None) -> bool:
        return upto is None or self.delivered_seq >= upto

    async def stored(
        self, tail: int, held: list[Msg] | None = None
    ) -> list[tuple[int, logs.LogLine]]:
        """The last `tail` lines stored when opened; events met meanwhile go to `held`."""
        lines: deque[tuple[int, logs.LogLine]] = deque(maxlen=tail)
        while not self.caught_up(self.last_seq):
            try:
                source, msg = await asyncio.wait_for(self.queue.get(), READ_TIMEOUT)
            except TimeoutError:
                # Lines may have aged out of the stream since it was asked.
                log.warning("log_read_timed_out", subject=self.subject)
                break
            if source == "event":
                if held is not None:
                    held.append(msg)
                continue
            line = self.line(msg)
            if line is not None:
                lines.append(line)
            if msg.metadata.num_pending == 0:
                break
        return list(lines)


def resume_from(request: web.Request) -> int | None:
    last_id = request.headers.get("Last-Event-ID", "")
    return int(last_id) + 1 if last_id.isdigit() else None


async def follow(
    request: web.Request, reader: LogReader, deployment: Deployment | None, tail: int
) -> web.StreamResponse:
    """Stream lines as server-sent events; a deployment's until it ends, a service's
    (`deployment` None) until the client leaves."""
    resume = resume_from(request)
    try:
        await reader.open(start_seq=resume or 1, follow=True)
        response = web.StreamResponse(
            headers={
                **response_headers(request),
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                # Tell nginx-like proxies not to buffer the stream.
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        follower = _Follower(request, response, reader, deployment)
        try:
            await follower.run(MAX_TAIL if resume else tail)
        except ConnectionResetError:
            pass  # the client left
        except Exception:
            # The stream has started: the error middleware can no longer answer.
            log.exception("log_follow_failed", subject=reader.subject)
            with contextlib.suppress(ConnectionResetError):
                await response.write(sse("error", {"message": "internal error"}))
        return response
    finally:
        await reader.close()


class _Follower:
    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        reader: LogReader,
        deployment: Deployment | None,
    ) -> None:
        self.request = request
        self.response = response
        self.reader = reader
        self.deployment_id = deployment.id if deployment else reader.deployment_id
        # A service's log never ends: it is followed until the client leaves.
        self.status = deployment.status if deployment else "running"
        self.sent: StatusChange | None = None
        self.first = (
            None
            if deployment is None
            else StatusChange(
                deployment_id=deployment.id,
                status=deployment.status,
                step=deployment.current_step,
                state="running" if deployment.current_step else deployment.status,
                reason=deployment.failure_reason,
            )
        )
        self.written_at = time.monotonic()

    async def write(self, chunk: bytes) -> None:
        await self.response.write(chunk)
        self.written_at = time.monotonic()

    async def run(self, tail: int) -> None:
        held: list[Msg] = []
        for seq, line in await self.reader.stored(tail, held):
            await self.write(sse("log", line, seq))
        if self.first is not None:
            await self.status_change(self.first)
        for msg in held:
            await self.on_event(msg)
        while self.status not in TERMINAL:
            try:
                source, msg = await asyncio.wait_for(self.reader.queue.get(), 1.0)
            except TimeoutError:
                if self.client_gone():
                    return
                if time.monotonic() - self.written_at >= KEEPALIVE_SECONDS:
                    await self.write(b": keepalive\n\n")
                continue
            if source == "log":
                await self.on_line(msg)
            else:
                await self.on_event(msg)
        await self.drain()
        await self.write(sse("end", {"deployment_id": self.deployment_id, "status": self.status}))
        await self.response.write_eof()

    def client_gone(self) -> bool:
        # Without handler cancellation aiohttp does not stop this handler when the
        # client disconnects; a closing transport says so.
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def on_line(self, msg: Msg) -> None:
        line = self.reader.line(msg)
        if line is not None:
            await self.write(sse("log", line[1], line[0]))

    async def on_event(self, msg: Msg) -> None:
        described = describe(msg, self.reader.namespace)
        if described is None:
            return
        live, event = described
        await self.status_change(_change(live, failure_reason(event)))

    async def status_change(self, change: StatusChange) -> None:
        self.status = change.status
        key = (change.status, change.step, change.state)
        if self.sent is None or key != (self.sent.status, self.sent.step, self.sent.state):
            self.sent = change
            await self.write(sse("status", change))

    async def drain(self) -> None:
        """Send the lines published before the deployment ended that are still in flight."""
        upto = await _last_seq(self.reader.js, self.reader.stream, self.reader.subject)
        deadline = time.monotonic() + DRAIN_SECONDS
        while not self.reader.caught_up(upto):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                source, msg = await asyncio.wait_for(self.reader.queue.get(), remaining)
            except TimeoutError:
                return
            if source == "log":
                await self.on_line(msg)


def _change(live: LiveEvent, reason: str | None) -> StatusChange:
    return StatusChange(
        deployment_id=live.deployment_id,
        status=live.status,
        step=live.name,
        state=live.state,
        event=live.type,
        reason=reason,
    )
