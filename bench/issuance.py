"""From verifying a domain to its certificate served by the edge, with pebble (no
validation sleep), against the bare ACME round trip on the same CA.

Baseline: certbot's `acme` library alone orders and finalizes a certificate for a
name over HTTP-01, answered by a bare aiohttp handler (the least the protocol
and the CA cost). DeployForge: POST /verify through the gateway, then the
domains service sees `domain.verified`, orders over HTTP-01 answered by the edge,
records the certificate and puts it in the edge bucket; the clock stops when a
TLS handshake with that name in SNI gets the certificate pebble issued.
Every service is a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from aiohttp import web

from bench.deploys import Api
from bench.gateway import gateway_env
from bench.procs import Child, running, wait_until
from bench.report import Table, fmt, fmt_ratio
from bench.stack import QUIET, auth_service, bootstrap_admin
from bench.stats import Summary, ratio, summarize
from libs.embedded import free_port
from libs.messaging import CommandBus
from libs.testing import Servers, Suite, isolated_suite
from services.domains.acme_client import AcmeClient, AcmeConfig, new_key_pem
from tests.challtestsrv import ChallTestSrv
from tests.pebble import Pebble


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    domains: int = 20


async def run(servers: Servers, work_dir: Path, settings: Settings) -> Table:
    dns = ChallTestSrv()
    await dns.start()
    try:
        baseline = await _baseline(dns, settings)
        through = await _deployforge(servers, work_dir, dns, settings)
    finally:
        await dns.stop()
    return _table(baseline, through, settings)


# --- the bare ACME round trip -------------------------------------------------------------


async def _baseline(dns: ChallTestSrv, settings: Settings) -> list[float]:
    answers: dict[str, str] = {}

    async def challenge(request: web.Request) -> web.Response:
        return web.Response(text=answers.get(request.match_info["token"], ""))

    app = web.Application()
    app.router.add_get("/.well-known/acme-challenge/{token}", challenge)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pebble = Pebble(dns_resolver=dns.resolver, http_port=port)
    await pebble.start()
    try:
        config = AcmeConfig(directory_url=pebble.directory_url, ca_bundle=pebble.ca_bundle)
        acme = await asyncio.to_thread(AcmeClient, config, new_key_pem())
        await asyncio.to_thread(acme.register)
        took = []
        for n in range(settings.domains):
            name = f"bare{n}.example.com"
            await dns.add_a(name, "127.0.0.1")

            def present(_: str, challenge: Any, value: str) -> None:
                answers[str(challenge.chall.encode("token"))] = value

            key = new_key_pem()
            started = time.perf_counter()
            order = await asyncio.to_thread(acme.open_order, key, [name])
            deadline = dt.datetime.now() + dt.timedelta(minutes=2)
            await asyncio.to_thread(
                acme.complete, order, key, [name], "http-01", present, present, deadline
            )
            took.append(time.perf_counter() - started)
        return took
    finally:
        await pebble.stop()
        await runner.cleanup()


# --- through DeployForge ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _suite(
    suite: Suite, log_dir: Path, dns: ChallTestSrv, pebble: Pebble, http_port: int, https_port: int
) -> AsyncIterator[str]:
    """Auth, deploy, domains, gateway and edge processes, ready; the gateway's URL."""
    port = free_port()
    domains_env = {
        **suite.environ(),
        **QUIET,
        "DEPLOYFORGE_DOMAINS_DNS_RESOLVER": dns.resolver,
        "DEPLOYFORGE_EDGE_PUBLIC_ADDRESSES": "127.0.0.1",
        "DEPLOYFORGE_ACME_DIRECTORY_URL": pebble.directory_url,
        "DEPLOYFORGE_ACME_CA_BUNDLE": pebble.ca_bundle,
        "DEPLOYFORGE_ACME_HTTP01_PROPAGATION_SECONDS": "0.05",
    }
    edge_env = {
        **suite.environ(),
        **QUIET,
        "DEPLOYFORGE_EDGE_HOST": "127.0.0.1",
        "DEPLOYFORGE_EDGE_HTTP_PORT": str(http_port),
        "DEPLOYFORGE_EDGE_HTTPS_PORT": str(https_port),
    }
    async with (
        auth_service(suite, log_dir) as auth,
        running("deploy", "services.deploy.main", {**suite.environ(), **QUIET}, log_dir) as d,
        running("domains", "services.domains.main", domains_env, log_dir) as domains,
        running("edge", "services.edge.main", edge_env, log_dir) as edge,
    ):
        nc = await nats.connect(suite.nats_url)
        try:
            bus = CommandBus(nc, namespace=suite.namespace)
            for name, child in (("deploy", d), ("domains", domains)):

                async def answers(service: str = name) -> bool:
                    return await bus.ping(service)

                await wait_until(answers, f"the {name} service", children=[child])
            await bootstrap_admin(nc, suite)
        finally:
            await nc.close()
        async with running("gateway", "gateway.main", gateway_env(suite, port), log_dir) as gw:
            children: list[Child] = [auth, d, domains, edge, gw]
            base = f"http://127.0.0.1:{port}"

            async def ready() -> bool:
                async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as r:
                    return r.status == 200

            await wait_until(ready, "the gateway", children=children)
            yield base


async def _deployforge(
    servers: Servers, work_dir: Path, dns: ChallTestSrv, settings: Settings
) -> list[float]:
    http_port, https_port = free_port(), free_port()
    pebble = Pebble(dns_resolver=dns.resolver, http_port=http_port)
    await pebble.start()
    try:
        async with (
            isolated_suite(servers, []) as suite,
            _suite(suite, work_dir, dns, pebble, http_port, https_port) as base,
            aiohttp.ClientSession() as http,
        ):
            api = Api(http, base)
            await api.login()
            env = await api.create("/v1/environments", {"name": "prod"})
            project = await api.create("/v1/projects", {"name": "Bench"})
            service = await api.create(
                "/v1/services",
                {
                    "project_id": project,
                    "name": "web",
                    "repository_url": "https://example.com/web.git",
                    "run_command": ["python", "app.py"],
                },
            )
            root = await pebble.root_pem()
            took = []
            for n in range(settings.domains):
                name = f"site{n}.example.com"
                body = {"domain": name, "service_id": service, "environment_id": env}
                added = await api.call("POST", "/v1/domains", body)
                [txt] = [r for r in added["dns_records"] if r["purpose"] == "verification"]
                await dns.set_txt(txt["name"], txt["value"])
                await dns.add_a(name, "127.0.0.1")
                started = time.perf_counter()
                await api.call("POST", f"/v1/domains/{added['id']}/verify")
                await _until_served(https_port, name, root)
                took.append(time.perf_counter() - started)
            return took
    finally:
        await pebble.stop()


async def _until_served(port: int, name: str, root: str, timeout: float = 60) -> None:
    context = ssl.create_default_context(cadata=root)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=name
            )
        except ssl.SSLCertVerificationError:
            await asyncio.sleep(0.01)  # the edge's fallback: not served yet
            continue
        writer.close()  # verified against pebble's root: the issued certificate is served
        return
    raise TimeoutError(f"{name} was not served in {timeout:.0f} s")


def _table(baseline: list[float], through: list[float], settings: Settings) -> Table:
    bare, ours = summarize(baseline), summarize(through)

    def row(label: str, s: Summary, base: Summary | None) -> list[str]:
        return [
            label,
            str(s.count),
            fmt(s.p50_ms / 1000, 2),
            fmt(s.p99_ms / 1000, 2),
            fmt_ratio(ratio(s.p50_ms, base.p50_ms)) if base else "",
        ]

    return Table(
        title="9. Certificates: verify to served (pebble, no validation sleep)",
        columns=["path", "domains", "p50 s", "p99 s", "p50 / bare p50"],
        rows=[
            row("bare ACME order over HTTP-01 (baseline)", bare, None),
            row("DeployForge: POST verify → certificate served by the edge", ours, bare),
        ],
        notes=[
            f"{settings.domains} domains one after another, each on a fresh order. The "
            "baseline is certbot's acme library alone with a bare HTTP-01 handler. "
            "DeployForge adds: the verification (two DNS lookups), the event to the domains "
            "service's ACME process, CAA, recording the order before it is answered, the "
            "edge picking the challenge up (50 ms propagation allowance), recording the "
            "certificate and the edge swapping it in. Both sides poll the CA the acme "
            "library's way (sleeps of about a second), so times come in steps of that size.",
        ],
    )
