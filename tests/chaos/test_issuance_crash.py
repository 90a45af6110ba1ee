"""SIGKILL of the domains service while a certificate is being ordered: the restarted
service resumes the order it recorded instead of opening another, and the certificate it
gets is that order's. Real pebble, DNS server, edge and process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import nats
import pytest

from libs.embedded import free_port
from libs.eventstore import EventStore
from libs.messaging import CommandBus
from services.domains.events import (
    CODECS,
    STREAM,
    CertificateIssued,
    CertificateOrderPlaced,
    CertificateRequested,
)
from tests.challtestsrv import ChallTestSrv
from tests.conftest import Stack
from tests.pebble import Pebble


async def _spawn(stack: Stack, dns: ChallTestSrv, pebble: Pebble) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        **stack.suite.environ(),
        "DEPLOYFORGE_DOMAINS_DNS_RESOLVER": dns.resolver,
        "DEPLOYFORGE_EDGE_PUBLIC_ADDRESSES": "127.0.0.1",
        "DEPLOYFORGE_ACME_DIRECTORY_URL": pebble.directory_url,
        "DEPLOYFORGE_ACME_CA_BUNDLE": pebble.ca_bundle,
        # A long look at the challenge before the CA is told: the kill lands in it.
        "DEPLOYFORGE_ACME_HTTP01_PROPAGATION_SECONDS": "3",
        "DEPLOYFORGE_ACME_RESUME_AFTER_SECONDS": "3",
        "DEPLOYFORGE_CERTIFICATE_CHECK_SECONDS": "1",
        "DEPLOYFORGE_LOG_FORMAT": "json",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.domains.main",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_answering(bus: CommandBus) -> None:
    for _ in range(300):
        if await bus.ping("domains", timeout=0.2):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the domains service never answered")


@pytest.mark.parametrize("kill_after", [0.0, 3.3], ids=["before-answer", "after-answer"])
async def test_sigkill_during_issuance_resumes_the_same_order(
    stack: Stack, dns: ChallTestSrv, kill_after: float
) -> None:
    from gateway import keys

    http_port = free_port()
    pebble = Pebble(dns_resolver=dns.resolver, http_port=http_port, validity_seconds=3600)
    await pebble.start()
    await stack.start_edge(edge_http_port=http_port)
    bus = CommandBus(stack.client.server.app[keys.NC], namespace=stack.suite.namespace)
    nc = await nats.connect(stack.suite.nats_url)
    store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
    store.register(STREAM)
    process = await _spawn(stack, dns, pebble)
    try:
        await _until_answering(bus)
        domain_id = await _verified_domain(stack, dns, "crash.example.com")
        placed = await _until(store, domain_id, CertificateOrderPlaced, timeout=30)
        await asyncio.sleep(kill_after)
        before = await store.load("certificate", domain_id, CODECS["certificate"])
        assert not any(isinstance(r.event, CertificateIssued) for r in before.events)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        process = await _spawn(stack, dns, pebble)
        issued = await _until(store, domain_id, CertificateIssued, timeout=60)
        events = [
            r.event
            for r in (await store.load("certificate", domain_id, CODECS["certificate"])).events
        ]
        orders = [e for e in events if isinstance(e, CertificateOrderPlaced)]
        assert [o.order_url for o in orders] == [placed.order_url]  # never a second order
        assert issued.order_url == placed.order_url
        assert len([e for e in events if isinstance(e, CertificateRequested)]) == 1
        assert len([e for e in events if isinstance(e, CertificateIssued)]) == 1
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()
        await nc.close()
        await pebble.stop()


async def _verified_domain(stack: Stack, dns: ChallTestSrv, name: str) -> str:
    client, auth = stack.client, stack.auth()
    env = await (await client.post("/v1/environments", json={"name": "prod"}, headers=auth)).json()
    project = await (await client.post("/v1/projects", json={"name": "P"}, headers=auth)).json()
    service = await (
        await client.post(
            "/v1/services",
            json={
                "project_id": project["id"],
                "name": "web",
                "repository_url": "https://example.com/web.git",
                "run_command": ["python", "app.py"],
            },
            headers=auth,
        )
    ).json()
    body = {"domain": name, "service_id": service["id"], "environment_id": env["id"]}
    resp = await client.post("/v1/domains", json=body, headers=auth)
    assert resp.status == 201, await resp.text()
    added: dict[str, Any] = await resp.json()
    [txt] = [r for r in added["dns_records"] if r["purpose"] == "verification"]
    await dns.set_txt(txt["name"], txt["value"])
    await dns.add_a(name, "127.0.0.1")
    resp = await client.post(f"/v1/domains/{added['id']}/verify", headers=auth)
    assert (await resp.json())["verification_status"] == "verified"
    return str(added["id"])


async def _until(store: EventStore, domain_id: str, kind: type[Any], timeout: float) -> Any:
    for _ in range(int(timeout * 50)):
        loaded = await store.load("certificate", domain_id, CODECS["certificate"])
        for recorded in loaded.events:
            if isinstance(recorded.event, kind):
                return recorded.event
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind.__name__} for {domain_id}")
