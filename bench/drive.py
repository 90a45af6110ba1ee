"""Run an async operation from many concurrent workers for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from bench.stats import Summary, summarize

Operation = Callable[[int], Awaitable[None]]


class Run(msgspec.Struct, kw_only=True):
    """What the workers did: each completed operation's latency, and the failures."""

    elapsed: float
    latencies: list[float]
    errors: int = 0
    first_error: str | None = None
    # Open loop only: how late each operation started against its schedule.
    slips: list[float] = msgspec.field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    @property
    def latency(self) -> Summary:
        return summarize(self.latencies)


def merge(runs: Sequence[Run]) -> Run:
    """Several runs of the same operation as one (rates weighted by time)."""
    errors = [r.first_error for r in runs if r.first_error]
    return Run(
        elapsed=sum(r.elapsed for r in runs),
        latencies=[x for r in runs for x in r.latencies],
        errors=sum(r.errors for r in runs),
        first_error=errors[0] if errors else None,
        slips=[x for r in runs for x in r.slips],
    )


async def drive(op: Operation, *, workers: int, duration: float) -> Run:
    """Call `op(worker)` back to back from `workers` tasks until `duration` has passed.

    Closed loop: each worker starts its next operation when the previous one
    ends, so `workers` operations are in flight at any time.
    """
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    started = time.perf_counter()
    deadline = started + duration

    async def worker(index: int) -> None:
        nonlocal errors, first_error
        while (begin := time.perf_counter()) < deadline:
            try:
                await op(index)
            except Exception as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                continue
            latencies.append(time.perf_counter() - begin)

    await asyncio.gather(*(worker(i) for i in range(workers)))
    elapsed = time.perf_counter() - started
    return Run(elapsed=elapsed, latencies=latencies, errors=errors, first_error=first_error)


async def drive_at_rate(op: Operation, *, workers: int, duration: float, rate: float) -> Run:
    """Start `op` `rate` times a second on a fixed schedule, from up to `workers` tasks.

    Open loop: the schedule does not wait for slow operations (as long as a
    worker is free), so a stall shows up as latency instead of as a lower
    request rate. Latency counts from when the operation actually started;
    `slips` records how late that was.
    """
    latencies: list[float] = []
    slips: list[float] = []
    errors = 0
    first_error: str | None = None
    total = max(1, round(duration * rate))
    next_slot = 0
    started = time.perf_counter()

    async def worker(index: int) -> None:
        nonlocal errors, first_error, next_slot
        while next_slot < total:
            due = started + next_slot / rate
            next_slot += 1
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            begin = time.perf_counter()
            slips.append(begin - due)
            try:
                await op(index)
            except Exception as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                continue
            latencies.append(time.perf_counter() - begin)

    await asyncio.gather(*(worker(i) for i in range(workers)))
    elapsed = time.perf_counter() - started
    return Run(
        elapsed=elapsed, latencies=latencies, errors=errors, first_error=first_error, slips=slips
    )
