"""The stable address: forwards faithfully, and moves between releases without a failed request."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.deploy.health import free_port, health_url, wait_healthy
from services.deploy.proxy import ProxyTable, StableProxy

# A release: answers its name, or echoes the request as JSON under /echo; keeps connections alive.
APP = """
import http.server, json, os, sys
name = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/echo"):
            data = json.dumps({"method": self.command, "path": self.path,
                "headers": dict(self.headers), "body": body.decode()}).encode()
        else:
            data = name
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "release=" + name.decode())
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = reply
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


class Releases:
    """Upstream servers as child processes, each on a free port."""

    def __init__(self) -> None:
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    async def start(self, name: str) -> int:
        port = free_port()
        env = {**os.environ, "PORT": str(port)}
        self.processes[port] = subprocess.Popen([sys.executable, "-c", APP, name], env=env)
        assert await wait_healthy(health_url(port), timeout=15)
        return port

    def stop(self, port: int) -> None:
        process = self.processes.pop(port)
        process.terminate()
        process.wait()

    def stop_all(self) -> None:
        for port in list(self.processes):
            self.stop(port)


@pytest.fixture
async def releases() -> AsyncIterator[Releases]:
    started = Releases()
    yield started
    started.stop_all()


async def test_requests_are_forwarded_faithfully(releases: Releases) -> None:
    port = await releases.start("v1")
    async with StableProxy(upstream=port) as proxy, aiohttp.ClientSession() as client:
        url = f"http://127.0.0.1:{proxy.port}/echo/a%2Fb?x=1&y=%20z"
        async with client.post(
            url,
            data=b"payload",
            headers={"X-Custom": "yes", "Connection": "keep-alive, X-Hop", "X-Hop": "drop me"},
        ) as response:
            assert response.status == 200
            echoed = await response.json(content_type=None)
        assert echoed["method"] == "POST"
        assert echoed["path"] == "/echo/a%2Fb?x=1&y=%20z"
        assert echoed["body"] == "payload"
        assert echoed["headers"]["X-Custom"] == "yes"
        assert "X-Hop" not in echoed["headers"]
        assert echoed["headers"]["Host"] == f"127.0.0.1:{proxy.port}"
        assert echoed["headers"]["X-Forwarded-For"] == "127.0.0.1"

        async with client.head(f"http://127.0.0.1:{proxy.port}/") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == "2"
            assert await response.read() == b""


async def test_one_clients_cookies_never_reach_another(releases: Releases) -> None:
    port = await releases.start("v1")
    async with StableProxy(upstream=port) as proxy:
        # The upstream sets a cookie on every answer; the proxy must not keep it.
        for _ in range(2):
            jar = aiohttp.DummyCookieJar()
            async with (
                aiohttp.ClientSession(cookie_jar=jar) as visitor,
                visitor.get(f"http://127.0.0.1:{proxy.port}/echo") as response,
            ):
                echoed = await response.json(content_type=None)
                assert response.headers["Set-Cookie"] == "release=v1"
            assert "Cookie" not in echoed["headers"]


async def test_without_an_upstream_the_address_answers_503_in_json() -> None:
    async with (
        StableProxy() as proxy,
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{proxy.port}/") as response,
    ):
        assert response.status == 503
        body = await response.json()
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_an_unreachable_upstream_answers_502() -> None:
    async with (
        StableProxy(upstream=free_port()) as proxy,
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{proxy.port}/") as response,
    ):
        assert response.status == 502
        assert (await response.json())["error"]["message"].startswith("upstream unreachable")


async def test_a_blue_green_switch_under_steady_traffic_fails_no_request(
    releases: Releases,
) -> None:
    blue = await releases.start("v1")
    green = await releases.start("v2")
    table = ProxyTable()
    listen = free_port()
    try:
        proxy = await table.ensure("svc_1:env_1", listen)
        assert table.switch("svc_1:env_1", blue) is None
        answers: list[tuple[float, str]] = []
        failures: list[str] = []
        switched_at: list[float] = []
        stop = asyncio.Event()

        async def visitor(client: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    async with client.get(f"http://127.0.0.1:{listen}/") as response:
                        text = await response.text()
                        if response.status != 200:
                            failures.append(f"{response.status} {text}")
                        else:
                            answers.append((sent, text))
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))

        async with aiohttp.ClientSession() as client:
            visitors = [asyncio.create_task(visitor(client)) for _ in range(20)]
            await asyncio.sleep(0.7)
            switched_at.append(time.monotonic())
            assert table.switch("svc_1:env_1", green) == blue
            # The old release stops only once what it was serving is done.
            assert await proxy.drain(blue, timeout=5)
            releases.stop(blue)
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*visitors)

        assert failures == []
        before = [text for sent, text in answers if sent < switched_at[0]]
        after = [text for sent, text in answers if sent > switched_at[0]]
        assert len(before) > 50 and len(after) > 50
        # Requests sent just before the switch may reach the proxy after it: only
        # what was sent afterwards is sure to land on the new release.
        assert "v1" in before
        assert set(after) == {"v2"}
    finally:
        await table.close()


async def test_a_route_keeps_its_upstream_when_its_address_moves(releases: Releases) -> None:
    port = await releases.start("v1")
    table = ProxyTable()
    try:
        first = await table.ensure("svc:env", free_port())
        table.switch("svc:env", port)
        assert await table.ensure("svc:env", first.port) is first
        moved = await table.ensure("svc:env", free_port())
        assert moved is not first and moved.upstream == port
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{moved.port}/") as response,
        ):
            assert await response.text() == "v1"
        with pytest.raises(KeyError):
            table.switch("svc:other", port)
    finally:
        await table.close()


# A release that speaks WebSocket: echoes each message back, upper-cased, under the
# subprotocol it was offered, and says which X-Forwarded-For it saw first.
WS_APP = """
import os
from aiohttp import web
async def ws(request):
    socket = web.WebSocketResponse(protocols=("echo.v1",))
    await socket.prepare(request)
    await socket.send_str("forwarded-for " + request.headers.get("X-Forwarded-For", ""))
    async for message in socket:
        if message.type == web.WSMsgType.TEXT:
            if message.data == "bye":
                await socket.close(code=4001, message=b"bye")
                break
            await socket.send_str(message.data.upper())
        elif message.type == web.WSMsgType.BINARY:
            await socket.send_bytes(message.data[::-1])
    return socket
async def health(request):
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/ws", ws)
app.router.add_get("/{tail:.*}", health)
web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), print=None)
"""


async def test_websocket_upgrades_pass_through_both_ways() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", WS_APP], env={**os.environ, "PORT": str(port)}
    )
    try:
        assert await wait_healthy(health_url(port), timeout=15)
        async with StableProxy(upstream=port) as proxy, aiohttp.ClientSession() as client:
            async with client.ws_connect(
                f"http://127.0.0.1:{proxy.port}/ws", protocols=("echo.v1",)
            ) as socket:
                assert socket.protocol == "echo.v1"
                first = await socket.receive_str(timeout=5)
                assert first == "forwarded-for 127.0.0.1"
                await socket.send_str("hello")
                assert await socket.receive_str(timeout=5) == "HELLO"
                await socket.send_bytes(b"\x00\x01\x02")
                assert await socket.receive_bytes(timeout=5) == b"\x02\x01\x00"
                await socket.send_str("bye")
                closing = await socket.receive(timeout=5)
                assert closing.type == aiohttp.WSMsgType.CLOSE
                assert socket.close_code == 4001 or closing.data == 4001
            # A plain request still goes through the same address.
            async with client.get(f"http://127.0.0.1:{proxy.port}/plain") as response:
                assert await response.text() == "ok"
    finally:
        process.terminate()
        process.wait()
