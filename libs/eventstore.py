"""The event store: one JetStream stream per bounded context.

An aggregate's history is the subject `<aggregate>.<id>` (prefixed by the
namespace when one is set). Appends carry `Nats-Msg-Id` (a retried append is
deduplicated by the server) and `Nats-Expected-Last-Subject-Sequence` (two
writers racing on one aggregate cannot both win).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Generic, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, Header, StorageType, StreamConfig

from libs.consumers import ensure_durable
from libs.errors import Conflict
from libs.events import (
    Event,
    EventCodec,
    EventContext,
    EventMeta,
    Recorded,
    event_type,
    meta_from_headers,
    meta_to_headers,
    utcnow,
)
from libs.ids import new_id
from libs.metrics import EVENTS_APPENDED
from libs.storable import check_json

E = TypeVar("E", bound=Event)

# JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check.
WRONG_LAST_SEQUENCE = 10071


class ConcurrencyError(Conflict):
    """Someone else appended to the aggregate since it was loaded."""


class StreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A bounded context's stream and the aggregates whose subjects it holds."""

    context: str
    aggregates: tuple[str, ...]
    # Aggregates and event types that record how a change was carried out (a queue
    # slot, a unique-name claim), not a change anyone asked for: the audit trail
    # leaves them out.
    bookkeeping: frozenset[str] = frozenset()


class Loaded(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    events: list[Recorded[E]]
    # Stream sequence of the aggregate's last event; 0 for a new aggregate.
    version: int


# `<context>:<sequence>` of the last event appended by the running task: a
# command's reply carries it (libs.messaging), so no handler can forget it.
_last_appended: ContextVar[str | None] = ContextVar("deployforge_last_appended", default=None)


def last_appended() -> str | None:
    """The consistency position of the last event the current task appended."""
    return _last_appended.get()


def forget_appended() -> None:
    """Start recording afresh (at the start of each command)."""
    _last_appended.set(None)


class EventStore:
    """Appends to and loads aggregates from JetStream."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        namespace: str = "",
        replicas: int = 1,
        timeout: float = 5.0,
    ) -> None:
        self.js = js
        self.namespace = namespace
        self.replicas = replicas
        self.timeout = timeout
        self._stream_of: dict[str, str] = {}
        self._context_of: dict[str, str] = {}

    def stream_name(self, context: str) -> str:
        base = context.upper()
        return f"{self.namespace.upper()}_{base}" if self.namespace else base

    def subject(self, aggregate: str, aggregate_id: str) -> str:
        prefix = f"{self.namespace}." if self.namespace else ""
        return f"{prefix}{aggregate}.{aggregate_id}"

    def register(self, spec: StreamSpec) -> None:
        """Tell the store which stream holds each aggregate (no I/O)."""
        for aggregate in spec.aggregates:
            self._stream_of[aggregate] = self.stream_name(spec.context)
            self._context_of[aggregate] = spec.context

    def subjects(self, spec: StreamSpec) -> list[str]:
        return [self.subject(aggregate, "*") for aggregate in spec.aggregates]

    async def ensure_stream(self, spec: StreamSpec) -> None:
        """Create the context's stream, or bring an existing one to this config.

        File storage, `replicas` copies, direct get on, and a two-minute
        duplicate window: a retried append within it is stored once.
        """
        self.register(spec)
        config = StreamConfig(
            name=self.stream_name(spec.context),
            subjects=self.subjects(spec),
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=120.0,
            allow_direct=True,
        )
        try:
            await self.js.stream_info(config.name)  # type: ignore[arg-type]
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config)
            return
        await self.js.update_stream(config)

    async def append(
        self,
        aggregate: str,
        aggregate_id: str,
        events: Sequence[Event],
        *,
        expected_version: int,
        context: EventContext | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        """Append `events` if the aggregate is still at `expected_version`.

        Returns the stream sequence of the last event appended. Raises
        `ConcurrencyError` when another writer got there first. Passing the
        same `event_ids` again (a retry) stores nothing twice.
        """
        ctx = context or EventContext()
        subject = self.subject(aggregate, aggregate_id)
        expected = expected_version
        ids = list(event_ids) if event_ids is not None else [new_id("evt") for _ in events]
        now = utcnow()
        bodies = [msgspec.json.encode(event) for event in events]
        for data in bodies:
            # The last line of defence, before the first append: inputs are checked
            # where they are decoded, but an event with text no read model can hold
            # would stay forever.
            check_json(data)
        for event, event_id, data in zip(events, ids, bodies, strict=True):
            meta = EventMeta(
                event_id=event_id,
                event_type=event_type(event),
                aggregate=aggregate,
                aggregate_id=aggregate_id,
                occurred_at=now,
                schema_version=type(event).schema_version,
                actor=ctx.actor,
                credential=ctx.credential,
                organization_id=ctx.organization_id,
                correlation_id=ctx.correlation_id,
                causation_id=ctx.causation_id,
                traceparent=ctx.traceparent,
            )
            headers = meta_to_headers(meta)
            headers[Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value] = str(expected)
            try:
                ack = await self.js.publish(subject, data, timeout=self.timeout, headers=headers)
            except nats.js.errors.APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    raise ConcurrencyError(
                        f"{aggregate} {aggregate_id} was changed concurrently",
                        {"aggregate": aggregate, "expected_version": expected},
                    ) from None
                raise
            expected = ack.seq
            EVENTS_APPENDED.labels(aggregate).inc()
        context_name = self._context_of.get(aggregate)
        if events and context_name is not None:
            _last_appended.set(f"{context_name}:{expected}")
        return expected

    async def load(
        self, aggregate: str, aggregate_id: str, codec: EventCodec[E], *, after: int = 0
    ) -> Loaded[E]:
        """Every event of one aggregate after stream sequence `after`, in order, and the
        aggregate's current version (`after` itself when nothing followed it)."""
        stream = self._stream_of[aggregate]
        subject = self.subject(aggregate, aggregate_id)
        recorded: list[Recorded[E]] = []
        seq = after + 1
        while True:
            try:
                msg = await self.js.get_msg(
                    stream, seq=seq, subject=subject, next=True, direct=True
                )
            except nats.js.errors.NotFoundError:
                break
            headers = msg.headers or {}
            meta = meta_from_headers(subject, headers, self.namespace)
            assert msg.seq is not None
            event = codec.decode(msg.data or b"", meta.event_type, meta.schema_version)
            recorded.append(Recorded(meta=meta, event=event, seq=msg.seq))
            seq = msg.seq + 1
        version = recorded[-1].seq if recorded else after
        return Loaded(events=recorded, version=version)

    async def ensure_durable(self, context: str, config: ConsumerConfig) -> None:
        """Create a durable consumer on the context's stream the first time; later
        starts find it and resume where it was."""
        await ensure_durable(self.js, self.stream_name(context), config)

    async def last_sequence(self, context: str) -> int:
        """The stream's last sequence: how far a caught-up projection must be."""
        info = await self.js.stream_info(self.stream_name(context))
        return int(info.state.last_seq)

    async def delete_streams(self, specs: Sequence[StreamSpec]) -> None:
        """Remove the streams (tests and namespaced teardown only)."""
        for spec in specs:
            try:
                await self.js.delete_stream(self.stream_name(spec.context))
            except nats.js.errors.NotFoundError:
                pass


__all__ = [
    "ConcurrencyError",
    "EventStore",
    "Loaded",
    "StreamSpec",
    "nats",
]
