"""A wildcard certificate over DNS-01: the challenge's TXT record is written into a real
authoritative server (Knot) by RFC 2136 updates signed with TSIG, pebble validates it
there, and the edge serves the wildcard for any subdomain, answered by the deployed app.
Also: the challenge records are withdrawn afterwards."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from libs.embedded import free_port
from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import _git, commit_version, make_service
from tests.knot import KEY_NAME, Knot
from tests.pebble import Pebble


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-dns01-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def knot() -> AsyncIterator[Knot]:
    server = Knot("example.com", ["*.apps 60 A 127.0.0.1"])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_wildcard_is_issued_over_dns01_and_serves_every_subdomain(
    stack: Stack, knot: Knot, workspace: Path
) -> None:
    http_port = free_port()
    pebble = Pebble(dns_resolver=knot.server, http_port=http_port, validity_seconds=3600)
    await pebble.start()
    try:
        await stack.start(
            "domains",
            domains_dns_resolver=knot.server,
            edge_public_addresses="127.0.0.1",
            acme_directory_url=pebble.directory_url,
            acme_ca_bundle=pebble.ca_bundle,
            acme_rfc2136_server=knot.server,
            acme_rfc2136_key_name=KEY_NAME,
            acme_rfc2136_key_secret=knot.key_secret,
            acme_dns_propagation_seconds=0.1,
            certificate_check_seconds=0.5,
        )
        edge = await stack.start_edge(edge_http_port=http_port)
        await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
        repo = workspace / "repo"
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        commit_version(repo, "v1")
        deployer = await make_service(stack, repo, greeting="wild")
        assert (await deployer.ended((await deployer.start())["id"]))["status"] == "succeeded"

        client, auth = stack.client, stack.auth()
        body = {
            "domain": "*.apps.example.com",
            "service_id": deployer.service,
            "environment_id": deployer.env,
            "challenge": "dns-01",
        }
        resp = await client.post("/v1/domains", json=body, headers=auth)
        assert resp.status == 201, await resp.text()
        added: dict[str, Any] = await resp.json()
        [txt] = [r for r in added["dns_records"] if r["purpose"] == "verification"]
        await knot.set_txt(txt["name"], txt["value"])
        resp = await client.post(f"/v1/domains/{added['id']}/verify", headers=auth)
        verified = await resp.json()
        assert (verified["verification_status"], verified["dns_configured"]) == ("verified", True)

        certificate: dict[str, Any] = {}
        for _ in range(600):
            resp = await client.get(f"/v1/domains/{added['id']}/certificate", headers=auth)
            certificate = await resp.json()
            if resp.status == 200 and certificate["status"] in ("issued", "failed"):
                break
            await asyncio.sleep(0.1)
        assert certificate["status"] == "issued", (certificate, pebble.log()[-2000:])
        assert certificate["names"] == ["*.apps.example.com"]
        assert certificate["challenge"] == "dns-01"
        # The challenge record was withdrawn once the CA was done with it.
        assert await knot.txt("_acme-challenge.apps.example.com") == []

        context = ssl.create_default_context(cadata=await pebble.root_pem())
        for name in ("api.apps.example.com", "www.apps.example.com"):
            status, text, served = await _https(edge.server.https_port, context, name)
            assert (status, text) == (200, "v1 built=True greeting=wild")
            assert format(served.serial_number, "x") == certificate["serial"]
    finally:
        await pebble.stop()


async def _https(port: int, context: ssl.SSLContext, name: str) -> tuple[int, str, Any]:
    for _ in range(100):
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=name
            )
            break
        except ssl.SSLError:
            await asyncio.sleep(0.1)  # the edge has not swapped the certificate in yet
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.write(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode(), x509.load_der_x509_certificate(der)
