"""Benchmark 3: how long after a command's reply the read model has its events.

Commands (`issue_token`, one event each) go to the auth service, in its own
process, over the command bus at a steady rate. Each reply carries the
position `auth:<seq>` of the event it stored; the projection NOTIFYs
`auth:<position>` on channel `deployforge_checkpoints` when it commits a
checkpoint. The lag of a command is the time from its reply to the first
notification at or past its position: what a read carrying the command's
consistency token waits in the gateway, which listens to the same channel.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import time
from pathlib import Path

import asyncpg
import msgspec
import nats

from bench.drive import drive_at_rate
from bench.procs import machine_cpu, process_cpu_seconds
from bench.report import Table, fmt
from bench.stack import Admin, auth_service, bootstrap_admin, wait_projected
from bench.stats import Summary, summarize
from libs.messaging import CommandBus
from libs.principal import Principal
from libs.projections import NOTIFY_CHANNEL
from libs.testing import Servers, isolated_suite
from services.auth.commands import IssueToken
from services.auth.events import STREAM as AUTH_STREAM

PROJECTION = "auth"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    rate: float = 500.0
    duration: float = 15.0
    warmup: float = 2.0
    # Commands in flight at most: enough that the schedule never waits for a free
    # worker even when replies slow down (64 would cap the rate at 500/s at 128 ms).
    workers: int = 256


class Sample(msgspec.Struct, frozen=True):
    sent_at: float
    replied_at: float
    seq: int


class Checkpoints:
    """Checkpoint notifications of one projection, as (arrival time, position)."""

    def __init__(self, projection: str) -> None:
        self.projection = projection
        self.times: list[float] = []
        self.positions: list[int] = []
        self._arrived = asyncio.Event()

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        if name == self.projection and position.isdigit():
            self.times.append(time.perf_counter())
            # Monotonic by construction (one leader, commit order), kept so regardless.
            last = self.positions[-1] if self.positions else 0
            self.positions.append(max(int(position), last))
            self._arrived.set()

    def reached(self, seq: int) -> float | None:
        """When the first checkpoint at or past `seq` arrived, if one has."""
        i = bisect.bisect_left(self.positions, seq)
        return self.times[i] if i < len(self.times) else None

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Until a checkpoint at or past `seq` arrives; False if `timeout` passes first."""
        try:
            async with asyncio.timeout(timeout):
                while self.reached(seq) is None:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    def ahead_of(self, samples: list[Sample]) -> int:
        """How many commands were in the read model before their reply arrived."""
        return sum(
            1 for s in samples if (at := self.reached(s.seq)) is not None and at <= s.replied_at
        )


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    commands: int
    # How late commands were sent against the schedule.
    slip: Summary
    errors: int
    first_error: str | None
    elapsed: float
    round_trip: Summary
    lag: Summary
    end_to_end: Summary
    unprojected: int
    ahead: int
    checkpoints: int
    auth_cores: float
    machine_cores: float


def _latencies(samples: list[Sample], checkpoints: Checkpoints) -> tuple[Summary, ...]:
    """Round trip, lag and end-to-end summaries of the answered commands."""
    round_trip = [s.replied_at - s.sent_at for s in samples]
    lags: list[float] = []
    end_to_end: list[float] = []
    for s in samples:
        at = checkpoints.reached(s.seq)
        if at is not None:
            lags.append(max(0.0, at - s.replied_at))
            end_to_end.append(at - s.sent_at)
    return summarize(round_trip), summarize(lags), summarize(end_to_end)


async def measure(
    bus: CommandBus, admin: Admin, checkpoints: Checkpoints, auth_pid: int, settings: Settings
) -> Outcome:
    principal = Principal(
        user_id=admin.user_id,
        organization_id=admin.organization_id,
        memberships={admin.organization_id: "owner"},
        is_superuser=True,
    )
    counter = itertools.count()
    samples: list[Sample] = []

    async def issue(_: int) -> None:
        command = IssueToken(name=f"bench-{next(counter)}", scopes=["read"])
        sent = time.perf_counter()
        result = await bus.request("auth", "issue_token", command, principal=principal)
        replied = time.perf_counter()
        samples.append(Sample(sent, replied, int((result.position or ":0").rpartition(":")[2])))

    rate, workers = settings.rate, settings.workers
    await drive_at_rate(issue, workers=workers, duration=settings.warmup, rate=rate)
    samples.clear()
    first_checkpoint = len(checkpoints.times)
    cpu_before, (busy_before, _) = process_cpu_seconds(auth_pid), machine_cpu()
    run = await drive_at_rate(issue, workers=workers, duration=settings.duration, rate=rate)
    auth_cores = (process_cpu_seconds(auth_pid) - cpu_before) / run.elapsed
    machine_cores = (machine_cpu()[0] - busy_before) / run.elapsed
    last = max((s.seq for s in samples), default=0)
    await checkpoints.wait_for(last, timeout=10.0)
    round_trip, lag, end_to_end = _latencies(samples, checkpoints)
    return Outcome(
        commands=len(samples),
        slip=summarize(run.slips),
        errors=run.errors,
        first_error=run.first_error,
        elapsed=run.elapsed,
        round_trip=round_trip,
        lag=lag,
        end_to_end=end_to_end,
        unprojected=len(samples) - lag.count,
        ahead=checkpoints.ahead_of(samples),
        checkpoints=len(checkpoints.times) - first_checkpoint,
        auth_cores=auth_cores,
        machine_cores=machine_cores,
    )


async def run(servers: Servers, work_dir: Path, settings: Settings) -> Table:
    async with (
        isolated_suite(servers, [AUTH_STREAM]) as suite,
        auth_service(suite, work_dir) as auth,
    ):
        nc = await nats.connect(suite.nats_url)
        listener = await asyncpg.connect(suite.database_url)
        try:
            admin = await bootstrap_admin(nc, suite)
            await wait_projected(suite, admin.position, auth)
            checkpoints = Checkpoints(PROJECTION)
            await listener.add_listener(NOTIFY_CHANNEL, checkpoints.on_notify)
            bus = CommandBus(nc, namespace=suite.namespace)
            outcome = await measure(bus, admin, checkpoints, auth.pid, settings)
        finally:
            await listener.close()
            await nc.close()
    return _table(outcome, settings)


def _table(o: Outcome, settings: Settings) -> Table:
    rows = [
        ["command round trip (request → reply)", *_cells(o.round_trip)],
        ["reply → read model checkpoint (lag)", *_cells(o.lag)],
        ["request → read model checkpoint", *_cells(o.end_to_end)],
    ]
    achieved = o.commands / o.elapsed if o.elapsed else 0.0
    per_checkpoint = o.commands / o.checkpoints if o.checkpoints else float("nan")
    notes = [
        f"`issue_token` commands at a target {settings.rate:g}/s for {settings.duration:g} s "
        f"(after {settings.warmup:g} s warm-up): {o.commands:,} answered, {achieved:,.0f}/s "
        f"achieved, {o.errors} errors.",
        f"Target: lag p99 < 25 ms at 500/s; measured {fmt(o.lag.p99_ms, 2)} ms. "
        f"{o.ahead:,} commands ({o.ahead / max(o.commands, 1):.0%}) were already in the read "
        "model when their reply arrived (lag 0).",
        f"{o.checkpoints:,} checkpoint transactions, {fmt(per_checkpoint, 1)} events each on "
        f"average. The auth service used {o.auth_cores:.2f} cores; the machine "
        f"{o.machine_cores:.2f} of {os.cpu_count()}.",
    ]
    if o.slip.p99_ms > 1:
        notes.append(f"Commands were sent up to {fmt(o.slip.p99_ms, 1)} ms late (p99).")
    if o.unprojected:
        notes.append(f"{o.unprojected} commands never reached the read model within 10 s.")
    if o.first_error:
        notes.append(f"First error: {o.first_error}")
    return Table(
        title="3. Command to read-model lag",
        columns=["interval", "p50 ms", "p99 ms", "max ms", "mean ms"],
        rows=rows,
        notes=notes,
    )


def _cells(s: Summary) -> list[str]:
    return [fmt(s.p50_ms, 2), fmt(s.p99_ms, 2), fmt(s.max_ms, 2), fmt(s.mean_ms, 2)]
