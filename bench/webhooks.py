"""Benchmark 5: webhook deliveries, event to receiver, against a bare aiohttp POST loop.

The webhooks service runs in its own process (`python -m services.webhooks.main`).
This process appends `project.created` events straight to the deploy context's
stream (as the deploy service would) and runs the receiver: an aiohttp server
on loopback that notes when each event arrives. One endpoint subscribes to them.

1. Throughput: a burst of events appended as fast as they go; deliveries per
   second from the first append to the last arrival. Baselines, in the same
   run: the same number of signed POSTs of the same body to the same receiver
   from a bare aiohttp client loop, one request at a time (the issue's "raw POST
   loop"), and from 8 such loops at once (the endpoint's lane concurrency).
   The producer's own appends (fsynced) share the two cores and the window.
2. Backlog: the same number of events appended while the webhooks service is
   stopped, then delivered when it starts again (catching up after downtime):
   deliveries per second from the first arrival to the last, the service's own
   delivery rate with no producer beside it.
3. Latency at a steady rate (500 events/s): from the append of an event to its
   arrival at the receiver (the dispatcher, the HTTP POST and everything
   between).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import nats
from aiohttp import web

from bench.drive import Run, drive_at_rate
from bench.procs import Child, running, wait_until
from bench.report import Table, fmt, fmt_ratio
from bench.servers import embedded_nats
from bench.stack import QUIET
from bench.stats import Summary, ratio, summarize
from libs.events import EventContext
from libs.eventstore import EventStore
from libs.messaging import CommandBus
from libs.principal import Principal
from libs.testing import Servers, Suite, isolated_suite
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.deploy.events import ProjectCreated
from services.webhooks import signing
from services.webhooks.commands import CreatedWebhook, CreateWebhook
from services.webhooks.events import DELIVERIES, ENDPOINTS

ORG = "org_bench"
OWNER = Principal(user_id="usr_bench", organization_id=ORG, memberships={ORG: "owner"})
CONCURRENCY = 8


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    burst: int = 3000
    rate: float = 500.0
    # Also at this rate: the latency when the pipeline is not near its limit.
    light_rate: float = 250.0
    duration: float = 15.0
    warmup: float = 2.0
    rounds: int = 2


class Receiver:
    """Notes when each project's event arrives (time.perf_counter in this process)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._decoder = msgspec.json.Decoder()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = self._decoder.decode(await request.read())
        self.requests += 1
        project = body.get("data", {}).get("project_id")
        if project is not None:
            self.arrived.setdefault(project, time.perf_counter())
        return web.Response(status=204)

    async def wait_for(self, ids: list[str], child: Child, timeout: float = 120) -> float:
        """Until every id arrived; the last arrival time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(i in self.arrived for i in ids):
            child.check_alive()
            if loop.time() > deadline:
                missing = sum(1 for i in ids if i not in self.arrived)
                raise TimeoutError(f"{missing} of {len(ids)} events never arrived")
            await asyncio.sleep(0.01)
        return max(self.arrived[i] for i in ids)


@contextlib.asynccontextmanager
async def webhooks_service(suite: Suite, log_dir: Path) -> AsyncIterator[Child]:
    env = {
        **suite.environ(),
        **QUIET,
        "DEPLOYFORGE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DEPLOYFORGE_WEBHOOK_ENDPOINT_CONCURRENCY": str(CONCURRENCY),
    }
    async with running("webhooks", "services.webhooks.main", env, log_dir) as child:
        nc = await nats.connect(suite.nats_url)
        try:
            bus = CommandBus(nc, namespace=suite.namespace)
            await wait_until(lambda: bus.ping("webhooks"), "the webhooks service", children=[child])
        finally:
            await nc.close()
        yield child


class Producer:
    """Appends `project.created` events as the deploy service would."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.sent: dict[str, float] = {}
        self._ids = itertools.count()
        self.context = EventContext(organization_id=ORG, actor="usr_bench")

    async def emit(self, _: int = 0) -> None:
        project_id = f"prj_bench{next(self._ids):08d}"
        event = ProjectCreated(
            project_id=project_id, organization_id=ORG, name=project_id, slug=project_id
        )
        self.sent[project_id] = time.perf_counter()
        await self.store.append(
            "project", project_id, [event], expected_version=0, context=self.context
        )


async def _burst(producer: Producer, receiver: Receiver, child: Child, n: int) -> float:
    """Deliveries per second of `n` events appended as fast as they go."""
    start = len(producer.sent)
    began = time.perf_counter()
    await asyncio.gather(*(producer.emit() for _ in range(n)))
    ids = list(producer.sent)[start:]
    last = await receiver.wait_for(ids, child)
    return n / (last - began)


async def _backlog(producer: Producer, receiver: Receiver, child: Child, n: int) -> float:
    """Deliveries per second of `n` events that were waiting when the service started."""
    await child.stop()
    start = len(producer.sent)
    await asyncio.gather(*(producer.emit() for _ in range(n)))
    ids = list(producer.sent)[start:]
    await child.start()
    last = await receiver.wait_for(ids, child)
    first = min(receiver.arrived[i] for i in ids)
    return (n - 1) / (last - first)


async def _baseline(receiver: Receiver, n: int, secret: str, loops: int) -> float:
    """The same signed POSTs from `loops` bare aiohttp client loops."""
    body = msgspec.json.encode(
        {"type": "project.created", "timestamp": "2026-11-22T00:00:00Z", "data": {"name": "x"}}
    )
    remaining = itertools.count()
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            while next(remaining) < n:
                headers = signing.headers([secret], "msg_baseline", int(time.time()), body)
                headers["Content-Type"] = "application/json"
                async with http.post(receiver.url, data=body, headers=headers) as resp:
                    await resp.read()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(loops)))
        return n / (time.perf_counter() - began)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    deliveries_per_s: float
    backlog_per_s: float
    loop_per_s: float
    loops_per_s: float
    latency: Summary
    light_latency: Summary
    slip: Summary
    events: int
    errors: int


async def run(servers: Servers, work_dir: Path, settings: Settings) -> Table:
    """The run on the given servers, then again on a nats-server that fsyncs every
    2 minutes instead of on every write: what durability costs the deliveries."""
    durable = await _run_on(servers, work_dir, settings)
    async with embedded_nats(work_dir / "nats-2m", "2m") as lazy:
        relaxed = await _run_on(
            Servers(lazy.url, servers.admin_dsn, "embedded"), work_dir, settings
        )
    return _table(durable, relaxed, settings)


async def _run_on(servers: Servers, work_dir: Path, settings: Settings) -> Outcome:
    receiver = Receiver()
    await receiver.start()
    try:
        async with (
            isolated_suite(servers, [DEPLOY_STREAM, ENDPOINTS, DELIVERIES]) as suite,
            webhooks_service(suite, work_dir) as child,
        ):
            nc = await nats.connect(suite.nats_url)
            try:
                store = EventStore(nc.jetstream(), namespace=suite.namespace)
                await store.ensure_stream(DEPLOY_STREAM)
                bus = CommandBus(nc, namespace=suite.namespace)
                reply = await bus.request(
                    "webhooks",
                    "create_webhook",
                    CreateWebhook(organization_id=ORG, url=receiver.url, events=["project.*"]),
                    principal=OWNER,
                )
                secret = msgspec.json.decode(reply.data, type=CreatedWebhook).secret
                outcome = await _measure(store, receiver, child, secret, settings)
            finally:
                await nc.close()
    finally:
        await receiver.stop()
    return outcome


async def _measure(
    store: EventStore, receiver: Receiver, child: Child, secret: str, settings: Settings
) -> Outcome:
    producer = Producer(store)
    await _burst(producer, receiver, child, 200)  # warm up: connections, caches
    ours: list[float] = []
    backlog: list[float] = []
    loop: list[float] = []
    loops: list[float] = []
    for _ in range(settings.rounds):
        loop.append(await _baseline(receiver, settings.burst, secret, 1))
        loops.append(await _baseline(receiver, settings.burst, secret, CONCURRENCY))
        ours.append(await _burst(producer, receiver, child, settings.burst))
        backlog.append(await _backlog(producer, receiver, child, settings.burst))

    async def steady(rate: float) -> tuple[list[float], Run]:
        await drive_at_rate(producer.emit, workers=64, duration=settings.warmup, rate=rate)
        first = len(producer.sent)
        run = await drive_at_rate(producer.emit, workers=64, duration=settings.duration, rate=rate)
        ids = list(producer.sent)[first:]
        await receiver.wait_for(ids, child)
        return [receiver.arrived[i] - producer.sent[i] for i in ids], run

    light, _ = await steady(settings.light_rate)
    latencies, run = await steady(settings.rate)
    return Outcome(
        light_latency=summarize(light),
        deliveries_per_s=max(ours),
        backlog_per_s=max(backlog),
        loop_per_s=max(loop),
        loops_per_s=max(loops),
        latency=summarize(latencies),
        slip=summarize(run.slips),
        events=len(latencies),
        errors=run.errors,
    )


def _table(o: Outcome, lazy: Outcome, settings: Settings) -> Table:
    burst = f"deliveries/s, burst of {settings.burst:,} (best of {settings.rounds})"
    rate = f"at {settings.rate:g} events/s"
    light = f"at {settings.light_rate:g} events/s"
    rows = []
    for sync, x in (("always", o), ("2m", lazy)):
        rows += [
            [
                sync,
                f"{burst} vs a bare aiohttp POST loop",
                fmt(x.deliveries_per_s, 0),
                fmt(x.loop_per_s, 0),
                fmt_ratio(ratio(x.deliveries_per_s, x.loop_per_s)),
            ],
            [
                sync,
                f"the same vs {CONCURRENCY} bare POST loops at once",
                fmt(x.deliveries_per_s, 0),
                fmt(x.loops_per_s, 0),
                fmt_ratio(ratio(x.deliveries_per_s, x.loops_per_s)),
            ],
            [
                sync,
                f"deliveries/s, backlog of {settings.burst:,} after a restart, vs the same loop",
                fmt(x.backlog_per_s, 0),
                fmt(x.loop_per_s, 0),
                fmt_ratio(ratio(x.backlog_per_s, x.loop_per_s)),
            ],
            [sync, f"event → delivery p50 {light}", f"{fmt(x.light_latency.p50_ms)} ms", "—", "—"],
            [sync, f"event → delivery p99 {light}", f"{fmt(x.light_latency.p99_ms)} ms", "—", "—"],
            [sync, f"event → delivery p50 {rate}", f"{fmt(x.latency.p50_ms)} ms", "—", "—"],
            [sync, f"event → delivery p99 {rate}", f"{fmt(x.latency.p99_ms)} ms", "—", "—"],
        ]
    return Table(
        title="5. Webhook deliveries (event → receiver)",
        columns=["nats sync", "measure", "DeployForge", "baseline", "ratio"],
        labels=2,
        rows=rows,
        notes=[
            f"{o.events:,} events in {settings.duration:g} s at {settings.rate:g}/s "
            f"(max {fmt(o.latency.max_ms)} ms; append errors {o.errors}; "
            f"schedule slip p99 {fmt(o.slip.p99_ms)} ms) with sync always.",
            "Each delivery: the event appended; the dispatcher's signed POST (a prompt "
            "delivery: the endpoint is healthy) and its `delivery.scheduled` append carrying "
            "that attempt; the delivery worker reading that record; the deliveries read model "
            "projected (Postgres fsync on); on the same 2 cores as the receiver and this "
            "driver. With sync always every append is an fsync.",
            "Burst: from the first append to the last arrival, the 3,000 fsynced appends of "
            "the producer included. Backlog: the events appended while the service was "
            "stopped, from the first arrival to the last after it started.",
            "Baselines: the same signed body POSTed to the same receiver by a bare aiohttp "
            f"client, one request at a time, and by {CONCURRENCY} loops at once (the "
            "endpoint's lane concurrency); nothing recorded, nothing retried.",
        ],
    )
