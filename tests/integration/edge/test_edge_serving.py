"""The edge serves what its bucket says: routes by Host, certificates by SNI swapped live,
redirects, challenges, 404 and 421, X-Forwarded-*, WebSockets, and a cold start with
1,000 domains. The bucket is written here directly; test_edge_routes.py has it written
by the domains context from real deployments."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp import web
from nats.js.kv import KeyValue

from libs.crypto import SecretBox
from libs.settings import load_settings
from libs.testing import Suite
from services.edge import table
from services.edge.main import Edge, EdgeSettings
from tests.certs import TestCA


@contextlib.asynccontextmanager
async def running_edge(suite: Suite, **overrides: Any) -> AsyncIterator[Edge]:
    settings = load_settings(
        EdgeSettings,
        suite.environ(),
        edge_host="127.0.0.1",
        edge_http_port=0,
        edge_https_port=0,
        **overrides,
    )
    edge, stop, ready = Edge(settings), asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(edge.run(stop, ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield edge
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


@pytest.fixture
async def bucket(suite: Suite) -> AsyncIterator[KeyValue]:
    nc = await nats.connect(suite.nats_url)
    try:
        yield await table.bucket(nc.jetstream(), suite.namespace)
    finally:
        await nc.close()


async def _echo(request: web.Request) -> web.StreamResponse:
    if request.path == "/ws":
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(f"echo {message.data}")
        return socket
    return web.json_response(
        {
            "path": request.path_qs,
            "host": request.headers.get("Host"),
            "forwarded_for": request.headers.get("X-Forwarded-For"),
            "forwarded_proto": request.headers.get("X-Forwarded-Proto"),
            "forwarded_host": request.headers.get("X-Forwarded-Host"),
        }
    )


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """A real HTTP server standing in for a stable address; its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _route(kv: KeyValue, domain_id: str, name: str, **fields: Any) -> None:
    route = table.Route(
        domain_id=domain_id,
        organization_id="org_1",
        full_domain=name,
        service_id="svc_1",
        environment_id="env_1",
        **fields,
    )
    await kv.put(table.route_key(domain_id), table.encode(route))


async def _upstream(kv: KeyValue, address: str, sequence: int = 1) -> None:
    entry = table.Upstream(address=address, deployment_id="dpl_1", sequence=sequence)
    await kv.put(table.upstream_key("svc_1", "env_1"), table.encode(entry))


async def _certificate(kv: KeyValue, suite: Suite, ca: TestCA, domain_id: str, *names: str) -> int:
    chain, key, serial = ca.issue(*names)
    entry = table.ServedCertificate(
        domain_id=domain_id,
        names=list(names),
        fullchain_pem=chain,
        sealed_key=SecretBox(suite.secret_key).seal(key, purpose=table.KEY_PURPOSE),
        serial=format(serial, "x"),
        not_after=ca.cert.not_valid_after_utc,
    )
    await kv.put(table.certificate_key(domain_id), table.encode(entry))
    return serial


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    for _ in range(int(timeout * 20)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the edge never caught up")


async def _http(
    edge: Edge, host: str, path: str = "/", method: str = "GET"
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"http://127.0.0.1:{edge.server.http_port}{path}",
            headers={"Host": host},
            allow_redirects=False,
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


async def _https(
    edge: Edge, ca: TestCA, sni: str, host: str | None = None, path: str = "/"
) -> tuple[int, str, int]:
    """One HTTPS request with `sni` in the handshake and `host` in the Host header:
    (status, body, the serial of the certificate the edge presented)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", edge.server.https_port, ssl=ca.client_context(), server_hostname=sni
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        peer = ssl_object.getpeercert()
        assert peer is not None
        serial = int(str(peer["serialNumber"]), 16)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host or sni}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode(errors="replace"), serial


async def test_routes_by_host_with_forwarded_headers_and_a_plain_404_otherwise(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    async with running_edge(suite) as edge:
        await _upstream(bucket, upstream)
        await _route(bucket, "dom_1", "shop.example.com")

        async def routed() -> bool:
            return (await _http(edge, "shop.example.com"))[0] == 200

        await _eventually(routed)
        status, _, body = await _http(edge, "Shop.Example.com.:80", "/cart?item=1")
        assert status == 200
        seen = json.loads(body)
        assert seen["path"] == "/cart?item=1"
        assert seen["host"] == "Shop.Example.com.:80"
        assert seen["forwarded_for"] == "127.0.0.1"
        assert seen["forwarded_proto"] == "http"
        assert seen["forwarded_host"] == "Shop.Example.com.:80"

        status, headers, body = await _http(edge, "unknown.example.com")
        assert status == 404
        assert headers["Content-Type"].startswith("text/plain")
        assert "not found" in body

        await bucket.delete(table.route_key("dom_1"))

        async def gone() -> bool:
            return (await _http(edge, "shop.example.com"))[0] == 404

        await _eventually(gone)


async def test_a_client_cannot_forge_forwarded_headers(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    await _upstream(bucket, upstream)
    await _route(bucket, "dom_1", "shop.example.com")
    async with running_edge(suite) as edge, aiohttp.ClientSession() as http:
        forged = {"Host": "shop.example.com", "X-Forwarded-For": "10.9.9.9",
                  "X-Forwarded-Proto": "https"}  # fmt: skip
        async with http.get(f"http://127.0.0.1:{edge.server.http_port}/", headers=forged) as resp:
            seen = await resp.json()
        assert seen["forwarded_for"] == "127.0.0.1"
        assert seen["forwarded_proto"] == "http"


async def test_redirect_to_keeps_the_path_with_301_for_reads_and_308_for_writes(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    await _upstream(bucket, upstream)
    await _route(bucket, "dom_1", "www.example.com", redirect_to="https://example.com")
    await _route(bucket, "dom_2", "old.example.com", redirect_to="https://new.example.com/moved")
    async with running_edge(suite) as edge:
        status, headers, _ = await _http(edge, "www.example.com", "/a/b?c=1")
        assert (status, headers["Location"]) == (301, "https://example.com/a/b?c=1")
        status, headers, _ = await _http(edge, "www.example.com", "/form", method="POST")
        assert (status, headers["Location"]) == (308, "https://example.com/form")
        status, headers, _ = await _http(edge, "old.example.com", "/anything")
        assert (status, headers["Location"]) == (301, "https://new.example.com/moved")


async def test_acme_challenges_are_answered_over_http_for_any_host(
    suite: Suite, bucket: KeyValue
) -> None:
    challenge = table.Challenge(key_authorization="tok123.thumbprint", domain="new.example.com")
    await bucket.put(table.challenge_key("tok123"), table.encode(challenge))
    async with running_edge(suite) as edge:
        path = "/.well-known/acme-challenge/tok123"
        status, _, body = await _http(edge, "new.example.com", path)
        assert (status, body) == (200, "tok123.thumbprint")
        assert (await _http(edge, "new.example.com", "/.well-known/acme-challenge/other"))[0] == 404
        await bucket.delete(table.challenge_key("tok123"))

        async def withdrawn() -> bool:
            return (await _http(edge, "new.example.com", path))[0] == 404

        await _eventually(withdrawn)


async def test_certificates_are_chosen_by_sni_swapped_live_and_a_wildcard_serves_subdomains(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    ca = TestCA()
    await _upstream(bucket, upstream)
    await _route(bucket, "dom_1", "shop.example.com")
    await _route(bucket, "dom_2", "*.apps.example.com")
    first = await _certificate(bucket, suite, ca, "dom_1", "shop.example.com")
    wildcard = await _certificate(bucket, suite, ca, "dom_2", "*.apps.example.com")
    async with running_edge(suite) as edge:
        status, body, serial = await _https(edge, ca, "shop.example.com", path="/x")
        assert (status, serial) == (200, first)
        assert json.loads(body)["forwarded_proto"] == "https"
        status, _, serial = await _https(edge, ca, "api.apps.example.com")
        assert (status, serial) == (200, wildcard)

        renewed = await _certificate(bucket, suite, ca, "dom_1", "shop.example.com")

        async def swapped() -> bool:
            return (await _https(edge, ca, "shop.example.com"))[2] == renewed

        await _eventually(swapped)  # the same process: no restart


async def test_host_and_sni_that_disagree_get_421(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    ca = TestCA()
    await _upstream(bucket, upstream)
    await _route(bucket, "dom_1", "shop.example.com")
    await _route(bucket, "dom_2", "admin.example.com")
    await _certificate(bucket, suite, ca, "dom_1", "shop.example.com")
    async with running_edge(suite) as edge:
        status, body, _ = await _https(edge, ca, "shop.example.com", host="admin.example.com")
        assert status == 421
        assert "misdirected" in body


async def test_http_goes_to_https_once_a_certificate_is_served_unless_turned_off(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    ca = TestCA()
    await _upstream(bucket, upstream)
    await _route(bucket, "dom_1", "shop.example.com")
    await _route(bucket, "dom_2", "plain.example.com", redirect_https=False)
    async with running_edge(suite, edge_public_https_port=443) as edge:
        assert (await _http(edge, "shop.example.com", "/p?q=1"))[0] == 200  # no certificate yet
        await _certificate(bucket, suite, ca, "dom_1", "shop.example.com")
        await _certificate(bucket, suite, ca, "dom_2", "plain.example.com")

        async def redirected() -> bool:
            return (await _http(edge, "shop.example.com"))[0] == 301

        await _eventually(redirected)
        _, headers, _ = await _http(edge, "shop.example.com", "/p?q=1")
        assert headers["Location"] == "https://shop.example.com/p?q=1"
        assert (await _http(edge, "plain.example.com"))[0] == 200


async def test_websockets_pass_through_the_edge(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    await _upstream(bucket, upstream)
    await _route(bucket, "dom_1", "shop.example.com")
    async with running_edge(suite) as edge, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{edge.server.http_port}/ws"
        async with http.ws_connect(url, headers={"Host": "shop.example.com"}) as socket:
            await socket.send_str("ping")
            assert await socket.receive_str(timeout=5) == "echo ping"


async def test_an_edge_starting_with_1000_domains_serves_them_all_once_ready(
    suite: Suite, bucket: KeyValue, upstream: str
) -> None:
    ca = TestCA()
    await _upstream(bucket, upstream)
    names = [f"site{n}.example.com" for n in range(1000)]
    for n, name in enumerate(names):
        await _route(bucket, f"dom_{n}", name)
        await _certificate(bucket, suite, ca, f"dom_{n}", name)
    async with running_edge(suite) as edge:
        # No waiting: ready means loaded.
        assert len(edge.state.routes) == 1000
        assert len(edge.certificates) == 1000
        connector = aiohttp.TCPConnector(limit=8)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def status(name: str) -> int:
                async with http.get(
                    f"http://127.0.0.1:{edge.server.http_port}/",
                    headers={"Host": name},
                    allow_redirects=False,
                ) as resp:
                    return resp.status

            statuses = await asyncio.gather(*(status(name) for name in names))
        assert set(statuses) == {301}  # each is served, and has its certificate
        for name in (names[0], names[499], names[-1]):
            assert (await _https(edge, ca, name))[0] == 200
