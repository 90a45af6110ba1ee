"""Benchmark 2: authenticated GETs through the gateway vs a bare aiohttp handler.

The gateway (`python -m gateway.main`), the baseline (`python -m bench.bare`)
and the load generator each run in their own process. First a closed-loop
pass per target finds its peak rate; then an open-loop pass at half of that
rate shows the latency a caller sees when the gateway is not saturated.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import nats

from bench import bare
from bench.drive import Run, merge
from bench.load import LoadGenerator, LoadSpec
from bench.procs import Child, machine_cpu, running, wait_until
from bench.report import Table, fmt, fmt_ratio
from bench.stack import ADMIN_EMAIL, ADMIN_PASSWORD, QUIET, auth_service, bootstrap_admin
from bench.stats import ratio, summarize
from libs.embedded import free_port
from libs.testing import Servers, Suite, isolated_suite
from services.auth.events import STREAM as AUTH_STREAM

# The per-credential limit (100/min by default) would turn the run into 429s.
UNLIMITED = "100000000"
CORES = os.cpu_count() or 1


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    connections: int = 32
    # Peak passes: `rounds` rounds over the targets in turn, `duration` s each.
    duration: float = 4.0
    rounds: int = 2
    # The open-loop pass at half the peak, once per target.
    half_duration: float = 6.0
    warmup: float = 1.0


class Target(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Pass(msgspec.Struct, frozen=True, kw_only=True):
    target: Target
    run: Run
    wall: float
    # CPU seconds used meanwhile by the server process and by the whole machine.
    server_cpu: float
    machine_cpu: float

    @property
    def cores(self) -> str:
        """CPU in use during the pass, in cores: "server/machine"."""
        return f"{self.server_cpu / self.wall:.2f}/{self.machine_cpu / self.wall:.2f}"


def merge_passes(passes: list[Pass]) -> Pass:
    """Rounds of one target as a single pass."""
    return Pass(
        target=passes[0].target,
        run=merge([p.run for p in passes]),
        wall=sum(p.wall for p in passes),
        server_cpu=sum(p.server_cpu for p in passes),
        machine_cpu=sum(p.machine_cpu for p in passes),
    )


def gateway_env(suite: Suite, port: int) -> dict[str, str]:
    return {
        **suite.environ(),
        **QUIET,
        "DEPLOYFORGE_HOST": "127.0.0.1",
        "DEPLOYFORGE_PORT": str(port),
        "DEPLOYFORGE_RATE_LIMIT_PER_MINUTE": UNLIMITED,
        # Login and the readiness probe count against the anonymous limit (60/min).
        "DEPLOYFORGE_ANONYMOUS_RATE_LIMIT_PER_MINUTE": UNLIMITED,
    }


async def _status(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status


async def _login(base: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"login failed: {response.status} {await response.text()}")
        body = await response.json()
    token: str = body["access_token"]
    return token


@contextlib.asynccontextmanager
async def _processes(suite: Suite, log_dir: Path) -> AsyncIterator[tuple[Child, Child, str, str]]:
    """The auth service, the gateway and the baseline, ready; their base URLs."""
    gateway_port, bare_port = free_port(), free_port()
    gateway_base = f"http://127.0.0.1:{gateway_port}"
    bare_base = f"http://127.0.0.1:{bare_port}"
    async with (
        auth_service(suite, log_dir) as auth,
        running("gateway", "gateway.main", gateway_env(suite, gateway_port), log_dir) as gateway,
        running("bare", "bench.bare", {}, log_dir, args=["--port", str(bare_port)]) as baseline,
    ):
        nc = await nats.connect(suite.nats_url)
        try:
            await bootstrap_admin(nc, suite)
        finally:
            await nc.close()

        async def gateway_ready() -> bool:
            # /healthz, not /readyz: this bench runs no deploy service, and the
            # admin bootstrap above already proved the auth service answers.
            return await _status(f"{gateway_base}/healthz") == 200

        async def bare_ready() -> bool:
            return await _status(f"{bare_base}{bare.PATH}") == 200

        await wait_until(gateway_ready, "the gateway", children=[auth, gateway])
        await wait_until(bare_ready, "the baseline server", children=[baseline])
        yield gateway, baseline, gateway_base, bare_base


async def _measure(load: LoadGenerator, target: Target, server: Child, spec: LoadSpec) -> Pass:
    spec = msgspec.structs.replace(spec, url=target.url, headers=target.headers)
    cpu_before, (busy_before, _) = server.cpu_seconds(), machine_cpu()
    started = time.perf_counter()
    run = await load.run(spec)
    wall = time.perf_counter() - started
    cpu_after, (busy_after, _) = server.cpu_seconds(), machine_cpu()
    return Pass(
        target=target,
        run=run,
        wall=wall,
        server_cpu=cpu_after - cpu_before,
        machine_cpu=busy_after - busy_before,
    )


async def _peaks(
    load: LoadGenerator, targets: list[tuple[Target, Child]], settings: Settings
) -> list[Pass]:
    """Closed loop; the targets take turns, round after round, to share out the noise."""
    spec = LoadSpec(
        url="",
        connections=settings.connections,
        duration=settings.duration,
        warmup=settings.warmup,
    )
    passes: list[list[Pass]] = [[] for _ in targets]
    for _ in range(settings.rounds):
        for i, (target, server) in enumerate(targets):
            passes[i].append(await _measure(load, target, server, spec))
    return [merge_passes(p) for p in passes]


async def _halves(
    load: LoadGenerator, targets: list[tuple[Target, Child]], peaks: list[Pass], settings: Settings
) -> list[Pass]:
    """Open loop at half of each target's peak rate."""
    out = []
    for (target, server), peak in zip(targets, peaks, strict=True):
        spec = LoadSpec(
            url="",
            connections=settings.connections,
            duration=settings.half_duration,
            warmup=settings.warmup,
            rate=peak.run.rate / 2,
        )
        out.append(await _measure(load, target, server, spec))
    return out


def _authenticated_get(base: str, path: str, headers: dict[str, str]) -> Target:
    return Target(label=f"GET {path}", url=f"{base}{path}", headers=headers)


def _row(p: Pass, load: str, baseline: Pass | None) -> list[str]:
    r = p.run
    return [
        p.target.label,
        load,
        fmt(r.rate, 0),
        fmt(r.latency.p50_ms, 2),
        fmt(r.latency.p99_ms, 2),
        str(r.errors),
        p.cores,
        fmt_ratio(ratio(r.rate, baseline.run.rate)) if baseline else "",
    ]


async def run(servers: Servers, work_dir: Path, settings: Settings) -> Table:
    async with (
        isolated_suite(servers, [AUTH_STREAM]) as suite,
        _processes(suite, work_dir) as (gateway, baseline, gateway_base, bare_base),
    ):
        token = await _login(gateway_base)
        auth = {"Authorization": f"Bearer {token}"}

        async def authenticated() -> bool:
            return await _status(f"{gateway_base}/v1/users/me", auth) == 200

        await wait_until(authenticated, "an authenticated GET", children=[gateway])
        targets = [
            (Target(label="bare aiohttp (baseline)", url=f"{bare_base}{bare.PATH}"), baseline),
            (_authenticated_get(gateway_base, "/v1/auth/verify", auth), gateway),
            (_authenticated_get(gateway_base, "/v1/users/me", auth), gateway),
        ]
        async with LoadGenerator() as load:
            peaks = await _peaks(load, targets, settings)
            halves = await _halves(load, targets, peaks, settings)
    return _table(peaks, halves, settings)


def _table(peaks: list[Pass], halves: list[Pass], settings: Settings) -> Table:
    base_peak, base_half = peaks[0], halves[0]
    rows = [_row(p, "peak", None if p is base_peak else base_peak) for p in peaks]
    rows += [_row(h, f"{h.run.rate:,.0f}/s", None if h is base_half else base_half) for h in halves]
    verify, me = peaks[1].run, peaks[2].run
    notes = [
        f"{settings.connections} keep-alive connections from one aiohttp client process. "
        f"`peak`: closed loop, {settings.rounds} rounds of {settings.duration:g} s per target, "
        f"targets in turn; the other rows: open loop at half that target's peak for "
        f"{settings.half_duration:g} s. Each pass after {settings.warmup:g} s of warm-up.",
        "Latency counts from when a request was sent. CPU is in cores: the server process / "
        f"the whole machine (all {CORES} cores = {CORES:.2f}), during the pass.",
        "Targets: gateway ≥ 0.5x the bare handler at peak; p99 < 10 ms at half the peak. "
        f"Peak ratio: verify {fmt_ratio(ratio(verify.rate, base_peak.run.rate))}, "
        f"users/me {fmt_ratio(ratio(me.rate, base_peak.run.rate))}; p99 at half peak: "
        f"verify {fmt(halves[1].run.latency.p99_ms, 2)} ms, "
        f"users/me {fmt(halves[2].run.latency.p99_ms, 2)} ms.",
    ]
    for p in [*peaks, *halves]:
        if p.run.first_error:
            notes.append(f"{p.target.label}: {p.run.errors} errors, first: {p.run.first_error}")
        slip = summarize(p.run.slips)
        if slip.count and slip.p99_ms > 1:
            notes.append(
                f"{p.target.label} at {p.run.rate:,.0f}/s: the client started p99 "
                f"{slip.p99_ms:.1f} ms late (not counted as latency)."
            )
    return Table(
        title="2. Gateway authenticated GETs per second",
        columns=["target", "load", "req/s", "p50 ms", "p99 ms", "errors", "CPU", "vs bare"],
        rows=rows,
        notes=notes,
        labels=2,
    )
