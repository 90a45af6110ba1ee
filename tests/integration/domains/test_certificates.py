"""Certificates from a real ACME CA (pebble) over HTTP-01 through a real edge, for a
domain verified against a real DNS server, in front of an app a real agent deployed:
issued, served by SNI with a chain to pebble's root, renewed by itself before expiry,
announced as expiring, failed and retried with backoff, refused by CAA, revoked; the
ssl.* events reach a webhook receiver that verifies them with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from libs.embedded import free_port
from tests.challtestsrv import ChallTestSrv
from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import _git, commit_version, make_service
from tests.pebble import Pebble
from tests.receivers import Receivers, verify

APP_TEXT = "v1 built=True greeting=hello"


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-certs-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Tls:
    """The suite with pebble, an edge its validations reach, and a deployed service."""

    def __init__(self, stack: Stack, dns: ChallTestSrv, pebble: Pebble, edge: Any) -> None:
        self.stack, self.dns, self.pebble, self.edge = stack, dns, pebble, edge
        self.service = self.env = ""

    async def domain(self, name: str, **fields: Any) -> dict[str, Any]:
        """A domain of the service, added and verified (its name pointing at the edge)."""
        client, auth = self.stack.client, self.stack.auth()
        body = {"domain": name, "service_id": self.service, "environment_id": self.env, **fields}
        resp = await client.post("/v1/domains", json=body, headers=auth)
        assert resp.status == 201, await resp.text()
        added: dict[str, Any] = await resp.json()
        [txt] = [r for r in added["dns_records"] if r["purpose"] == "verification"]
        await self.dns.set_txt(txt["name"], txt["value"])
        await self.dns.add_a(name, "127.0.0.1")
        resp = await client.post(f"/v1/domains/{added['id']}/verify", headers=auth)
        assert (await resp.json())["verification_status"] == "verified"
        return added

    async def certificate(self, domain_id: str) -> tuple[int, dict[str, Any]]:
        resp = await self.stack.client.get(
            f"/v1/domains/{domain_id}/certificate", headers=self.stack.auth()
        )
        return resp.status, await resp.json()

    async def until_certificate(
        self, domain_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for _ in range(int(timeout * 10)):
            status, body = await self.certificate(domain_id)
            if status == 200 and done(body):
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"certificate never got there: {body}\n{self.pebble.log()[-2000:]}")

    async def https(self, name: str, path: str = "/") -> tuple[int, str, x509.Certificate]:
        """GET through the edge's HTTPS port with SNI `name`, trusting only pebble's root."""
        context = ssl.create_default_context(cadata=await self.pebble.root_pem())
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.edge.server.https_port, ssl=context, server_hostname=name
        )
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body.decode(), x509.load_der_x509_certificate(der)


@pytest.fixture
async def tls(stack: Stack, dns: ChallTestSrv, workspace: Path) -> AsyncIterator[Tls]:
    http_port = free_port()
    pebble = Pebble(dns_resolver=dns.resolver, http_port=http_port, validity_seconds=3600)
    await pebble.start()
    try:
        yield await _suite(stack, dns, pebble, workspace, http_port)
    finally:
        await pebble.stop()


@pytest.fixture
async def short_lived(stack: Stack, dns: ChallTestSrv, workspace: Path) -> AsyncIterator[Tls]:
    """Pebble issuing certificates valid for 12 seconds: renewal is due after 8."""
    http_port = free_port()
    pebble = Pebble(dns_resolver=dns.resolver, http_port=http_port, validity_seconds=12)
    await pebble.start()
    try:
        yield await _suite(stack, dns, pebble, workspace, http_port)
    finally:
        await pebble.stop()


async def _suite(
    stack: Stack, dns: ChallTestSrv, pebble: Pebble, workspace: Path, http_port: int, **acme: Any
) -> Tls:
    await stack.start(
        "domains",
        domains_dns_resolver=dns.resolver,
        edge_public_addresses="127.0.0.1",
        acme_directory_url=pebble.directory_url,
        acme_ca_bundle=pebble.ca_bundle,
        acme_contact_email="ops@example.com",
        acme_http01_propagation_seconds=0.2,
        certificate_check_seconds=0.5,
        certificate_retry_initial_seconds=1,
        certificate_retry_max_seconds=4,
        **acme,
    )
    await stack.start_webhooks()
    edge = await stack.start_edge(edge_http_port=http_port)
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    repo = workspace / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit_version(repo, "v1")
    deployer = await make_service(stack, repo, greeting="hello")
    deployed = await deployer.ended((await deployer.start())["id"])
    assert deployed["status"] == "succeeded", deployed
    suite = Tls(stack, dns, pebble, edge)
    suite.service, suite.env = deployer.service, deployer.env
    return suite


async def _hook(stack: Stack, receivers: Receivers) -> tuple[Any, str]:
    receiver = await receivers()
    resp = await stack.client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["ssl.*"]}, headers=stack.auth()
    )
    assert resp.status == 201, await resp.text()
    return receiver, (await resp.json())["secret"]


async def test_a_verified_domain_gets_a_certificate_served_by_sni_through_the_edge(
    tls: Tls, receivers: Receivers
) -> None:
    receiver, secret = await _hook(tls.stack, receivers)
    domain = await tls.domain("shop.example.com")
    # Verification is enough: the certificate is ordered without being asked for.
    issued = await tls.until_certificate(domain["id"], lambda c: c["status"] == "issued")
    assert issued["names"] == ["shop.example.com"]
    assert "Pebble" in issued["issuer"]
    assert issued["attempts"] == 0 and issued["last_error"] is None
    assert issued["renewal_due_at"] < issued["not_after"]

    status, body, served = await _eventually_https(tls, "shop.example.com")
    assert (status, body) == (200, APP_TEXT)  # the deployed app, over TLS, chain verified
    assert format(served.serial_number, "x") == issued["serial"]

    # HTTP now redirects to HTTPS.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{tls.edge.server.http_port}/cart",
            headers={"Host": "shop.example.com"},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 301
        assert resp.headers["Location"].startswith("https://shop.example.com")

    domain_view = await (
        await tls.stack.client.get(f"/v1/domains/{domain['id']}", headers=tls.stack.auth())
    ).json()
    assert domain_view["ssl_status"] == "issued" and domain_view["ssl_expires_at"]

    received = await receiver.wait_for(lambda rs: any(_type(r) == "ssl.issued" for r in rs))
    [event] = [verify(secret, r) for r in received if _type(r) == "ssl.issued"]
    assert event["data"]["serial"] == issued["serial"]
    assert any(_type(r) == "ssl.requested" for r in received)
    for r in received:
        assert b"PRIVATE KEY" not in r.body

    # Asking again changes nothing: the certificate is served and not due.
    resp = await tls.stack.client.post(
        f"/v1/domains/{domain['id']}/certificate", headers=tls.stack.auth()
    )
    assert resp.status == 202
    assert (await resp.json())["serial"] == issued["serial"]


async def test_a_failed_order_is_retried_with_backoff_and_then_succeeds(
    tls: Tls, receivers: Receivers
) -> None:
    receiver, _ = await _hook(tls.stack, receivers)
    domain = await tls.domain("late.example.com")
    # Verified by TXT, but the name points elsewhere: the CA cannot reach the edge.
    await tls.dns._post("/clear-a", {"host": "late.example.com."})
    await tls.dns.add_a("late.example.com", "192.0.2.1")
    failed = await tls.until_certificate(
        domain["id"], lambda c: c["status"] == "failed" or c["status"] == "issued"
    )
    if failed["status"] == "failed":
        assert failed["attempts"] >= 1 and failed["retry_at"] and failed["last_error"]
        await receiver.wait_for(lambda rs: any(_type(r) == "ssl.failed" for r in rs))
        await tls.dns.add_a("late.example.com", "127.0.0.1")
        await tls.dns._post("/clear-a", {"host": "late.example.com."})
        await tls.dns.add_a("late.example.com", "127.0.0.1")
        issued = await tls.until_certificate(domain["id"], lambda c: c["status"] == "issued")
        assert issued["attempts"] == 0
    else:
        pytest.fail(f"issued although the name pointed away: {failed}")


async def test_caa_records_that_forbid_the_ca_are_reported_before_ordering(tls: Tls) -> None:
    await tls.dns._post(
        "/add-caa",
        {"host": "caa.example.com.", "policies": [{"tag": "issue", "value": "sectigo.com"}]},
    )
    domain = await tls.domain("caa.example.com")
    failed = await tls.until_certificate(domain["id"], lambda c: c["status"] == "failed")
    assert failed["last_error"] == "CAA records allow only sectigo.com to issue for this name"
    assert failed["serial"] is None


async def test_revoking_stops_the_edge_serving_the_certificate(tls: Tls) -> None:
    domain = await tls.domain("gone.example.com")
    await tls.until_certificate(domain["id"], lambda c: c["status"] == "issued")
    await _eventually_https(tls, "gone.example.com")
    resp = await tls.stack.client.delete(
        f"/v1/domains/{domain['id']}/certificate?reason=keyCompromise", headers=tls.stack.auth()
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "revoked"
    context = ssl.create_default_context(cadata=await tls.pebble.root_pem())

    async def refused() -> bool:
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", tls.edge.server.https_port, ssl=context,
                server_hostname="gone.example.com",
            )  # fmt: skip
        except ssl.SSLCertVerificationError:
            return True  # the edge's fallback, not a certificate for this name
        writer.close()
        return False

    await _until(refused)


async def test_a_certificate_renews_itself_before_expiry_and_the_edge_swaps_it_live(
    short_lived: Tls, receivers: Receivers
) -> None:
    tls = short_lived
    receiver, secret = await _hook(tls.stack, receivers)
    domain = await tls.domain("renew.example.com")
    first = await tls.until_certificate(domain["id"], lambda c: c["status"] == "issued")
    # The lifetime is the certificate's own (12 s), not an assumed 90 days.
    lifetime = _seconds(first["not_after"]) - _seconds(first["not_before"])
    assert 11 <= lifetime <= 13
    renewed = await tls.until_certificate(
        domain["id"], lambda c: c["serial"] not in (None, first["serial"]), timeout=40
    )
    assert renewed["status"] == "issued"

    async def swapped() -> bool:
        try:
            _, _, served = await tls.https("renew.example.com")
        except (ssl.SSLError, ConnectionError):
            return False
        return format(served.serial_number, "x") != first["serial"]

    await _until(swapped)
    received = await receiver.wait_for(
        lambda rs: (
            any(_type(r) == "ssl.renewed" for r in rs)
            and any(_type(r) == "ssl.expiring" for r in rs)
        )
    )
    renewal = next(verify(secret, r) for r in received if _type(r) == "ssl.renewed")
    assert renewal["data"]["previous_serial"] == first["serial"]
    expiring = next(verify(secret, r) for r in received if _type(r) == "ssl.expiring")
    assert expiring["data"]["days"] == 1 and expiring["data"]["serial"] == first["serial"]


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def _eventually_https(tls: Tls, name: str) -> tuple[int, str, x509.Certificate]:
    last: Exception | None = None
    for _ in range(100):
        try:
            return await tls.https(name)
        except (ssl.SSLError, ConnectionError) as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"the edge never served {name} over TLS: {last!r}")


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    for _ in range(int(timeout * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never")


def _type(request: Any) -> str:
    return str(request.payload.get("type"))
