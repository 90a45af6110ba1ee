"""The edge: requests through it against the same app called directly and through its
stable address, and TLS handshakes with 1,000 certificates loaded against 1.

Every server is a process of its own: the app (bench.bare), its stable address
(bench.stable, the agent's proxy), and the edge (`python -m services.edge.main`)
whose bucket the benchmark fills as the domains context would: a route, the
upstream, and self-signed certificates sealed with the suite's master key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats

from bench import bare
from bench.gateway import Pass, Target, _measure, merge_passes
from bench.load import LoadGenerator, LoadSpec
from bench.procs import Child, running, wait_until
from bench.report import Table, fmt, fmt_ratio
from bench.stack import QUIET
from bench.stats import ratio
from libs.crypto import SecretBox
from libs.embedded import free_port
from libs.testing import Servers, Suite, isolated_suite
from services.edge import table
from services.edge.certificates import self_signed

HOST = "bench.example.com"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    connections: int = 32
    duration: float = 4.0
    rounds: int = 2
    warmup: float = 1.0
    handshake_connections: int = 16
    certificates: int = 1000


async def _fill(suite: Suite, upstream: str, names: list[str]) -> None:
    """The bucket as the domains context writes it: routes, the upstream, certificates."""
    box = SecretBox(suite.secret_key)
    nc = await nats.connect(suite.nats_url)
    try:
        kv = await table.bucket(nc.jetstream(), suite.namespace)
        await kv.put(
            table.upstream_key("svc_bench", "env_bench"),
            table.encode(table.Upstream(address=upstream, deployment_id="dpl_bench", sequence=1)),
        )
        for n, name in enumerate(names):
            domain_id = f"dom_{n}"
            route = table.Route(
                domain_id=domain_id,
                organization_id="org_bench",
                full_domain=name,
                service_id="svc_bench",
                environment_id="env_bench",
                redirect_https=False,  # HTTP is measured too, not redirected
            )
            await kv.put(table.route_key(domain_id), table.encode(route))
            chain, key = self_signed(name)
            served = table.ServedCertificate(
                domain_id=domain_id,
                names=[name],
                fullchain_pem=chain.decode(),
                sealed_key=box.seal(key, purpose=table.KEY_PURPOSE),
                serial=f"{n:x}",
                not_after=_far(),
            )
            await kv.put(table.certificate_key(domain_id), table.encode(served))
    finally:
        await nc.close()


def _far() -> datetime:
    return datetime.now(UTC) + timedelta(days=365)


@contextlib.asynccontextmanager
async def _edge(suite: Suite, log_dir: Path, name: str) -> AsyncIterator[tuple[Child, int, int]]:
    http_port, https_port = free_port(), free_port()
    env = {
        **suite.environ(),
        **QUIET,
        "DEPLOYFORGE_EDGE_HOST": "127.0.0.1",
        "DEPLOYFORGE_EDGE_HTTP_PORT": str(http_port),
        "DEPLOYFORGE_EDGE_HTTPS_PORT": str(https_port),
    }
    async with running(name, "services.edge.main", env, log_dir) as edge:

        async def listening() -> bool:
            try:
                _, writer = await _connect(http_port)
            except OSError:
                return False
            writer.close()
            return True

        await wait_until(listening, f"the edge ({name})", children=[edge])
        yield edge, http_port, https_port


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def run(servers: Servers, work_dir: Path, settings: Settings) -> list[Table]:
    app_port, stable_port = free_port(), free_port()
    async with (
        isolated_suite(servers, []) as one,
        isolated_suite(servers, []) as many,
        running("app", "bench.bare", {}, work_dir, args=["--port", str(app_port)]) as app,
        running(
            "stable",
            "bench.stable",
            {},
            work_dir,
            args=["--port", str(stable_port), "--upstream", str(app_port)],
        ) as stable,
    ):
        stable_url = f"http://127.0.0.1:{stable_port}"
        app_url = f"http://127.0.0.1:{app_port}"
        names = [f"site{n}.example.com" for n in range(settings.certificates)]
        await _fill(one, stable_url, [HOST])
        await _fill(many, stable_url, [HOST, *names[1:]])
        async with (
            _edge(one, work_dir, "edge-1") as (edge, http_port, https_port),
            _edge(many, work_dir, "edge-1000") as (edge_many, _, many_https),
            LoadGenerator() as load,
        ):
            throughput = await _throughput(
                load,
                [
                    (
                        Target(label="app directly (baseline)", url=f"{app_url}{bare.PATH}"),
                        app,
                    ),
                    (Target(label="its stable address", url=f"{stable_url}{bare.PATH}"), stable),
                    (
                        Target(
                            label="edge, HTTP",
                            url=f"http://127.0.0.1:{http_port}{bare.PATH}",
                            headers={"Host": HOST},
                        ),
                        edge,
                    ),
                    (
                        Target(
                            label="edge, HTTPS keep-alive",
                            url=f"https://127.0.0.1:{https_port}{bare.PATH}",
                            headers={"Host": HOST},
                        ),
                        edge,
                    ),
                ],
                settings,
            )
            handshakes = await _handshakes(
                load,
                [
                    ("1 certificate loaded", edge, https_port, [HOST]),
                    (
                        f"{settings.certificates:,} certificates loaded",
                        edge_many,
                        many_https,
                        [HOST, *names[1:]],
                    ),
                ],
                settings,
            )
    return [_throughput_table(throughput, settings), _handshake_table(handshakes, settings)]


async def _throughput(
    load: LoadGenerator, targets: list[tuple[Target, Child]], settings: Settings
) -> list[Pass]:
    passes: list[list[Pass]] = [[] for _ in targets]
    for _ in range(settings.rounds):
        for i, (target, server) in enumerate(targets):
            spec = LoadSpec(
                url=target.url,
                headers=target.headers,
                connections=settings.connections,
                duration=settings.duration,
                warmup=settings.warmup,
                server_hostname=HOST if target.url.startswith("https") else "",
            )
            passes[i].append(await _measure(load, target, server, spec))
    return [merge_passes(p) for p in passes]


async def _handshakes(
    load: LoadGenerator, edges: list[tuple[str, Child, int, list[str]]], settings: Settings
) -> list[Pass]:
    passes: list[list[Pass]] = [[] for _ in edges]
    for _ in range(settings.rounds):
        for i, (label, server, port, names) in enumerate(edges):
            target = Target(label=label, url=f"https://127.0.0.1:{port}/")
            spec = LoadSpec(
                url=target.url,
                connections=settings.handshake_connections,
                duration=settings.duration,
                warmup=settings.warmup,
                handshake_names=names,
            )
            passes[i].append(await _measure(load, target, server, spec))
    return [merge_passes(p) for p in passes]


def _row(p: Pass, baseline: Pass | None, unit_digits: int = 0) -> list[str]:
    r = p.run
    return [
        p.target.label,
        fmt(r.rate, unit_digits),
        fmt(r.latency.p50_ms, 2),
        fmt(r.latency.p99_ms, 2),
        str(r.errors),
        p.cores,
        fmt_ratio(ratio(r.rate, baseline.run.rate)) if baseline else "",
    ]


def _throughput_table(passes: list[Pass], settings: Settings) -> Table:
    direct, stable, http, https = passes
    notes = [
        f"{settings.connections} keep-alive connections from one aiohttp client process, "
        f"closed loop, {settings.rounds} rounds of {settings.duration:g} s per target in turn, "
        f"after {settings.warmup:g} s of warm-up. The app is a bare aiohttp handler; the edge "
        "forwards to the app's stable address (the agent's proxy), which forwards to the app: "
        "two hops, each a process of its own.",
        "CPU is in cores: the server process / the whole machine during the pass.",
        f"Target: the edge over HTTP ≥ 0.5x the app called directly: "
        f"{fmt_ratio(ratio(http.run.rate, direct.run.rate))}; against its stable address "
        f"{fmt_ratio(ratio(http.run.rate, stable.run.rate))}; HTTPS "
        f"{fmt_ratio(ratio(https.run.rate, direct.run.rate))}.",
    ]
    for p in passes:
        if p.run.first_error:
            notes.append(f"{p.target.label}: {p.run.errors} errors, first: {p.run.first_error}")
    return Table(
        title="7. Edge: requests through it against the app directly",
        columns=["target", "req/s", "p50 ms", "p99 ms", "errors", "CPU", "vs direct"],
        rows=[_row(p, None if p is direct else direct) for p in passes],
        notes=notes,
    )


def _handshake_table(passes: list[Pass], settings: Settings) -> Table:
    one, many = passes
    notes = [
        f"Full TLS handshakes (no session resumption), {settings.handshake_connections} at a "
        f"time, each with the next name in SNI (all {settings.certificates:,} in turn for the "
        "second edge), connection closed after the handshake. ECDSA P-256 certificates.",
        f"Target ≥ 0.9x: {fmt_ratio(ratio(many.run.rate, one.run.rate))}.",
    ]
    for p in passes:
        if p.run.first_error:
            notes.append(f"{p.target.label}: {p.run.errors} errors, first: {p.run.first_error}")
    return Table(
        title="8. Edge: TLS handshakes per second by SNI",
        columns=["edge", "handshakes/s", "p50 ms", "p99 ms", "errors", "CPU", "vs 1"],
        rows=[_row(one, None), _row(many, one)],
        notes=notes,
    )
