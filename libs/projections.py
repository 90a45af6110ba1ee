"""Projections: events in, Postgres read models out.

A projection applies each event and advances its checkpoint in the same
transaction, skips what it has already applied, and acks only after commit:
at-least-once delivery, exactly-once effect.

Ordering matters (an update must not land before the insert it updates), so
one runner per projection is active at a time: replicas take a Postgres
advisory lock and the others stand by until it is released. The active runner
recreates its durable consumer at checkpoint + 1 when it takes over, so
messages a dead runner left unacked are never applied out of order.

A projection never spins on an event. Transient failures (connections,
timeouts) are retried with backoff, quietly. An event that fails twice in a
row on its own stops the projection at that sequence: one error line, the
`deployforge_projection_stalled_sequence` gauge, and the checkpoint row's
`stalled_at`, which the gateway's `/readyz` reports, until an operator clears
it (`deployforge projections retry|skip`, docs/operations.md). Events an
operator skipped are skipped by replays too, so a replayed model equals the
live one.

Tables are referred to unqualified; the runner sets `search_path` to the
projection's schema, which is how `replay` builds a fresh copy beside the live
one and swaps it in (libs/replay.py).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace

from libs.consumers import pull
from libs.database import connect, ensure_core_schema
from libs.events import Event, EventCodec, EventMeta, Recorded, meta_from_headers
from libs.eventstore import EventStore, StreamSpec
from libs.metrics import PROJECTED, PROJECTION_RETRIES, PROJECTION_STALLED
from libs.tracing import continued

log = structlog.get_logger("projection")
tracer = trace.get_tracer("deployforge.projections")

NOTIFY_CHANNEL = "deployforge_checkpoints"


class Projection(abc.ABC):
    """A read model: its tables, the stream it follows, and how events change it."""

    name: str
    schema: str
    spec: StreamSpec
    ddl: str
    codecs: Mapping[str, EventCodec[Any]]
    # Whether a consistency token of this stream waits for this read model (the
    # one the stream's own context serves reads from; not the audit trail).
    answers_reads: bool = True

    def wants(self, meta: EventMeta) -> bool:
        """Whether to decode and apply an event at all, from its metadata alone."""
        return True

    @abc.abstractmethod
    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        """Change the tables for one event; runs inside the runner's transaction."""

    async def apply_all(self, conn: asyncpg.Connection, batch: Sequence[Recorded[Event]]) -> None:
        """Change the tables for a batch of events, in order, inside the runner's
        transaction. Override to write runs of events in fewer statements."""
        for recorded in batch:
            with traced(recorded):
                await self.apply(conn, recorded)


@contextlib.contextmanager
def traced(recorded: Recorded[Event]) -> Iterator[None]:
    """A span for projecting `recorded`: the trace of the request that caused it goes on."""
    with continued(tracer, f"project {recorded.meta.event_type}", recorded.meta.traceparent):
        yield


def decode(projection: Projection, msg: Msg, namespace: str) -> Recorded[Event] | None:
    """The recorded event in `msg`, or None for an aggregate this projection ignores."""
    meta = meta_from_headers(msg.subject, msg.headers or {}, namespace)
    codec = projection.codecs.get(meta.aggregate)
    if codec is None or not projection.wants(meta):
        return None
    event = codec.decode(msg.data, meta.event_type, meta.schema_version)
    return Recorded(meta=meta, event=event, seq=msg.metadata.sequence.stream)


def quote_ident(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


async def create_tables(conn: asyncpg.Connection, projection: Projection, schema: str) -> None:
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
    await conn.execute(projection.ddl)


async def apply_batch(
    conn: asyncpg.Connection,
    projection: Projection,
    schema: str,
    msgs: Sequence[Msg],
    namespace: str,
    *,
    position: int,
    skips: frozenset[int] = frozenset(),
) -> int:
    """Apply the events after `position` in the open transaction, whose search_path
    is already `schema`, passing over the sequences in `skips`; the new position."""
    batch: list[Recorded[Event]] = []
    for msg in msgs:
        seq = msg.metadata.sequence.stream
        if seq <= position:
            continue
        if seq in skips:
            position = seq
            continue
        recorded = decode(projection, msg, namespace)
        if recorded is not None:
            batch.append(recorded)
        position = seq
    if batch:
        await projection.apply_all(conn, batch)
    return position


async def ensure_checkpoint(conn: asyncpg.Connection, name: str, stream: str) -> None:
    await conn.execute(
        "INSERT INTO deployforge.projection_checkpoints (projection, stream) VALUES ($1, $2) "
        "ON CONFLICT (projection) DO NOTHING",
        name,
        stream,
    )


async def lock_checkpoint(conn: asyncpg.Connection, name: str, schema: str) -> int:
    """Hold the checkpoint row for this transaction and point search_path at `schema`.

    One round trip. Holding the row is what lets `replay` swap schemas without
    racing the live runner.
    """
    position: int = await conn.fetchval(
        "SELECT position FROM deployforge.projection_checkpoints, "
        "  set_config('search_path', $2, true) WHERE projection = $1 FOR UPDATE",
        name,
        quote_ident(schema),
    )
    return position


async def save_checkpoint(conn: asyncpg.Connection, name: str, position: int) -> None:
    # Saved and announced in one round trip; the NOTIFY is delivered at commit.
    # Progress means any stall (always at the next event) is behind us.
    await conn.execute(
        "WITH saved AS (UPDATE deployforge.projection_checkpoints "
        "  SET position = $2, updated_at = now(), "
        "      stalled_at = NULL, stalled_error = NULL, stalled_since = NULL "
        "  WHERE projection = $1 RETURNING position) "
        "SELECT pg_notify($3, $1 || ':' || position) FROM saved",
        name,
        position,
        NOTIFY_CHANNEL,
    )


async def checkpoint(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> int:
    """How far projection `name` has applied its stream (0 if never run)."""
    value = await conn.fetchval(
        "SELECT position FROM deployforge.projection_checkpoints WHERE projection = $1", name
    )
    return int(value or 0)


async def skipped(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> frozenset[int]:
    """The sequences an operator chose to pass over in projection `name`."""
    rows = await conn.fetch(
        "SELECT seq FROM deployforge.projection_skips WHERE projection = $1", name
    )
    return frozenset(int(row["seq"]) for row in rows)


# Failures that say nothing about the event being applied: retry with backoff.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # connections, and the builtin TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    nats.errors.Error,
)
MAX_BACKOFF = 30.0


def describe(exc: BaseException) -> str:
    """An error for logs and the checkpoint row: its class and SQLSTATE, never its
    message, which may quote the value that failed."""
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} ({sqlstate})" if sqlstate else type(exc).__name__


class ProjectionRunner:
    """Keeps one projection's read model up to date while this replica holds its lock."""

    def __init__(
        self,
        projection: Projection,
        dsn: str,
        store: EventStore,
        *,
        batch: int = 256,
        fetch_timeout: float = 1.0,
        standby_interval: float = 1.0,
        stall_poll: float = 5.0,
    ) -> None:
        self.projection = projection
        self.dsn = dsn
        self.store = store
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.standby_interval = standby_interval
        self.stall_poll = stall_poll
        self.position = 0
        # The sequence this runner is stopped at, while it is.
        self.stalled: int | None = None
        self.skips: frozenset[int] = frozenset()
        self.leading = asyncio.Event()
        store.register(projection.spec)

    @property
    def stream(self) -> str:
        return self.store.stream_name(self.projection.spec.context)

    @property
    def durable(self) -> str:
        return f"projection_{self.projection.name}"

    async def run(self, stop: asyncio.Event) -> None:
        """Lead when possible, stand by otherwise, until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except TRANSIENT_ERRORS as exc:
                PROJECTION_RETRIES.labels(self.projection.name).inc()
                log.info(
                    "projection_retrying", projection=self.projection.name, error=describe(exc)
                )
            except Exception:
                # Not an event (those stall, see _lead): setup failed. Say so loudly,
                # but back off rather than spin.
                log.exception("projection_failed", projection=self.projection.name)
            else:
                failures = 0
                continue
            self.leading.clear()
            delay = min(MAX_BACKOFF, self.standby_interval * 2**failures)
            failures += 1
            await _sleep_or_stop(stop, delay)

    async def _run_once(self, stop: asyncio.Event) -> None:
        conn = await connect(self.dsn)
        try:
            lock_key = f"deployforge:projection:{self.projection.name}"
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_key):
                    break
                await _sleep_or_stop(stop, self.standby_interval)
            if stop.is_set():
                return
            await self._lead(conn, stop)
        finally:
            self.leading.clear()
            await conn.close(timeout=2)

    async def _prepare(self, conn: asyncpg.Connection) -> int:
        await ensure_core_schema(conn)
        async with conn.transaction():
            await ensure_checkpoint(conn, self.projection.name, self.stream)
            position = await lock_checkpoint(conn, self.projection.name, self.projection.schema)
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1", self.projection.schema
            )
            if not exists and position:
                # The read model was dropped: rebuild it from the first event.
                log.info("projection_rebuilding", projection=self.projection.name)
                position = 0
                await save_checkpoint(conn, self.projection.name, 0)
            await create_tables(conn, self.projection, self.projection.schema)
        return position

    async def _lead(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        self.position = await self._prepare(conn)
        self.skips = await skipped(conn, self.projection.name)
        js = self.store.js
        try:
            await js.delete_consumer(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            pass
        await js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.durable,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.position + 1,
                ack_policy=AckPolicy.ALL,
                ack_wait=30,
                max_ack_pending=self.batch * 4,
            ),
        )
        sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        log.info("projection_leading", projection=self.projection.name, position=self.position)
        self.leading.set()
        try:
            while not stop.is_set():
                msgs = await pull(sub, self.batch, self.fetch_timeout)
                if not msgs:  # idle: the normal case
                    continue
                try:
                    await self._apply(conn, msgs)
                except TRANSIENT_ERRORS:
                    raise
                except Exception:
                    # Some event in the batch cannot be applied: find it, one at a time.
                    if await self._isolate(conn, msgs, stop):
                        return  # stalled, then cleared: lead again from the checkpoint
                # AckPolicy.ALL: acking the last message acks the whole batch.
                await msgs[-1].ack()
        finally:
            await sub.unsubscribe()

    async def _apply(self, conn: asyncpg.Connection, msgs: Sequence[Msg]) -> None:
        """Apply `msgs` and save the checkpoint in one transaction."""
        async with conn.transaction():
            position = await lock_checkpoint(conn, self.projection.name, self.projection.schema)
            new = await apply_batch(
                conn,
                self.projection,
                self.projection.schema,
                msgs,
                self.store.namespace,
                position=position,
                skips=self.skips,
            )
            if new > position:
                await save_checkpoint(conn, self.projection.name, new)
        if new > position:
            PROJECTED.labels(self.projection.name).inc(
                sum(1 for m in msgs if m.metadata.sequence.stream > position)
            )
        self.position = max(new, position)

    async def _isolate(
        self, conn: asyncpg.Connection, msgs: Sequence[Msg], stop: asyncio.Event
    ) -> bool:
        """Apply `msgs` one by one. An event that fails twice in a row stops the
        projection there until an operator acts; True when that happened."""
        for msg in msgs:
            for attempt in (1, 2):
                try:
                    await self._apply(conn, [msg])
                    break
                except TRANSIENT_ERRORS:
                    raise
                except Exception as exc:
                    if attempt == 2:
                        await self._stall(conn, msg.metadata.sequence.stream, exc, stop)
                        return True
        return False

    async def _stall(
        self, conn: asyncpg.Connection, seq: int, exc: BaseException, stop: asyncio.Event
    ) -> None:
        """Stay stopped at `seq`, holding the lead (a standby would only fail the same
        way), until the checkpoint row's `stalled_at` is cleared or `stop` is set."""
        name = self.projection.name
        error = describe(exc)
        log.error("projection_stalled", projection=name, stream=self.stream, seq=seq, error=error)
        self.stalled = seq
        PROJECTION_STALLED.labels(name).set(seq)
        await conn.execute(
            "UPDATE deployforge.projection_checkpoints "
            "SET stalled_at = $2, stalled_error = $3, stalled_since = now() WHERE projection = $1",
            name,
            seq,
            error,
        )
        try:
            while not stop.is_set():
                await _sleep_or_stop(stop, self.stall_poll)
                still = await conn.fetchval(
                    "SELECT stalled_at FROM deployforge.projection_checkpoints "
                    "WHERE projection = $1",
                    name,
                )
                if still is None:
                    log.info("projection_resuming", projection=name, seq=seq)
                    return
        finally:
            self.stalled = None
            PROJECTION_STALLED.labels(name).set(0)

    async def wait_for(self, position: int, timeout: float = 5.0) -> None:
        """Until this runner has applied `position` (tests and benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < position:
            if loop.time() > deadline:
                raise TimeoutError(f"{self.projection.name} at {self.position}, wanted {position}")
            await asyncio.sleep(0.002)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
