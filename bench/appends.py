"""Benchmark 1: event appends with the concurrency check vs raw JetStream publishes.

One event per `EventStore.append(..., expected_version=...)`, each worker
appending to its own aggregate (sequential per aggregate, many aggregates at
once), against `js.publish` of a body of the same size, from as many
workers, to a plain file-backed stream on the same server. Both are measured
on a server with `sync_interval: always` (DeployForge's default) and on one
with JetStream's default two-minute interval, which shows what the fsync on
every write costs.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import msgspec
import nats
from nats.js import JetStreamContext
from nats.js.api import Header, StorageType, StreamConfig

from bench.drive import Operation, Run, drive, merge
from bench.report import Table, fmt, fmt_ratio
from bench.servers import embedded_nats
from bench.stats import ratio
from libs.events import Event, EventContext, EventMeta, event_type, meta_to_headers, utcnow
from libs.eventstore import EventStore, StreamSpec
from libs.ids import new_id

SPEC = StreamSpec(context="bench", aggregates=("item",))
RAW_STREAM = "BENCH_RAW"
CONTEXT = EventContext(actor="usr_bench", organization_id="org_bench", correlation_id="req_bench")
# JetStream's default sync interval, which DESIGN.md's Durability section replaces.
DEFAULT_SYNC = "2m"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    concurrency: int = 64
    duration: float = 3.0
    rounds: int = 3
    warmup: float = 1.0
    payload_bytes: int = 256


class Appended(Event, frozen=True, kw_only=True, tag="bench.appended"):
    data: str


def sized_event(payload_bytes: int) -> Appended:
    """An event whose JSON body is exactly `payload_bytes` long (when that is possible)."""
    overhead = len(msgspec.json.encode(Appended(data="")))
    return Appended(data="x" * max(0, payload_bytes - overhead))


def header_bytes(event: Event) -> int:
    """Bytes of NATS headers the store adds to each event (as sent on the wire)."""
    meta = EventMeta(
        event_id=new_id("evt"),
        event_type=event_type(event),
        aggregate="item",
        aggregate_id=new_id("itm"),
        occurred_at=utcnow(),
        actor=CONTEXT.actor,
        organization_id=CONTEXT.organization_id,
        correlation_id=CONTEXT.correlation_id,
    )
    headers = meta_to_headers(meta)
    headers[Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value] = "123456"
    return len("NATS/1.0\r\n\r\n") + sum(len(k) + len(v) + 4 for k, v in headers.items())


def store_op(store: EventStore, event: Appended) -> Operation:
    """Append one event to worker i's own aggregate at its last known version."""
    run_id = secrets.token_hex(3)
    versions: dict[int, int] = {}

    async def op(worker: int) -> None:
        versions[worker] = await store.append(
            "item",
            f"{run_id}-{worker}",
            [event],
            expected_version=versions.get(worker, 0),
            context=CONTEXT,
        )

    return op


def raw_op(js: JetStreamContext, body: bytes) -> Operation:
    """Publish `body` to worker i's own subject of a plain stream and wait for the ack."""
    run_id = secrets.token_hex(3)

    async def op(worker: int) -> None:
        await js.publish(f"raw.{run_id}.{worker}", body, timeout=5.0)

    return op


async def measure_server(work_dir: Path, sync_interval: str, settings: Settings) -> dict[str, Run]:
    """Both paths on one fresh nats-server, alternating rounds to share out the noise."""
    async with embedded_nats(work_dir / f"nats-sync-{sync_interval}", sync_interval) as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            store = EventStore(js, namespace="bench")
            await store.ensure_stream(SPEC)
            await js.add_stream(
                StreamConfig(name=RAW_STREAM, subjects=["raw.>"], storage=StorageType.FILE)
            )
            event = sized_event(settings.payload_bytes)
            ops = {
                "store": store_op(store, event),
                "raw": raw_op(js, msgspec.json.encode(event)),
            }
            for op in ops.values():
                await drive(op, workers=settings.concurrency, duration=settings.warmup)
            runs: dict[str, list[Run]] = {kind: [] for kind in ops}
            for round_ in range(settings.rounds):
                order = list(ops) if round_ % 2 == 0 else list(reversed(ops))
                for kind in order:
                    run = await drive(
                        ops[kind], workers=settings.concurrency, duration=settings.duration
                    )
                    runs[kind].append(run)
            return {kind: merge(parts) for kind, parts in runs.items()}
        finally:
            await nc.close()


async def run(work_dir: Path, settings: Settings) -> Table:
    results = {
        sync: await measure_server(work_dir, sync, settings) for sync in ("always", DEFAULT_SYNC)
    }
    rows: list[list[str]] = []
    for sync, by_kind in results.items():
        raw = by_kind["raw"]
        for kind, label in (
            ("store", "EventStore.append, expected_version"),
            ("raw", "js.publish, plain stream (baseline)"),
        ):
            r = by_kind[kind]
            rows.append(
                [
                    f"{sync}",
                    label,
                    fmt(r.rate, 0),
                    fmt(r.latency.p50_ms, 2),
                    fmt(r.latency.p99_ms, 2),
                    str(r.errors),
                    fmt_ratio(ratio(r.rate, raw.rate)),
                ]
            )
    event = sized_event(settings.payload_bytes)
    always, default = results["always"], results[DEFAULT_SYNC]
    notes = [
        f"{settings.concurrency} aggregates (subjects) in flight, one event per append; "
        f"{settings.rounds} alternating rounds of {settings.duration:g} s per path and server.",
        f"Body {len(msgspec.json.encode(event))} bytes on both paths; the store adds "
        f"~{header_bytes(event)} bytes of headers (Nats-Msg-Id, event metadata, "
        "Nats-Expected-Last-Subject-Sequence).",
        "Target: store ≥ 0.5x raw publish. "
        f"Store vs raw: {fmt_ratio(ratio(always['store'].rate, always['raw'].rate))} with "
        f"sync always, {fmt_ratio(ratio(default['store'].rate, default['raw'].rate))} with "
        f"{DEFAULT_SYNC}.",
        "Cost of fsync on every write (always ÷ "
        f"{DEFAULT_SYNC}): store {fmt_ratio(ratio(always['store'].rate, default['store'].rate))}, "
        f"raw {fmt_ratio(ratio(always['raw'].rate, default['raw'].rate))} of the throughput.",
    ]
    for sync, by_kind in results.items():
        for kind, r in by_kind.items():
            if r.first_error:
                notes.append(f"{kind} ({sync}) first error: {r.first_error}")
    return Table(
        title="1. Event appends per second (nats-server sync_interval per row)",
        columns=["sync", "path", "appends/s", "p50 ms", "p99 ms", "errors", "vs raw"],
        rows=rows,
        notes=notes,
        labels=2,
    )
