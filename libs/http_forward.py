"""Forwarding one HTTP request (or WebSocket) to an upstream: the reverse proxies' core.

Both reverse proxies of the suite use it: an agent's stable address (in front
of a service's instances) and the edge (in front of the stable addresses).
Hop-by-hop headers stay on their connection (RFC 9110 section 7.6.1), bodies pass
byte for byte in both directions, `X-Forwarded-*` say who asked and how, and a
WebSocket upgrade is answered by opening one to the upstream and relaying
its messages both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

# RFC 9110 section 7.6.1: these describe one connection, not the message.
_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "trailers", "transfer-encoding", "upgrade",
        # aiohttp answers 100-continue itself; passed on, the upstream would answer it again.
        "expect",
    }
)  # fmt: skip
# Headers aiohttp's client would add on its own; the upstream must see the client's, or none.
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# The handshake's own headers: aiohttp's client makes new ones for its side.
_WEBSOCKET_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
     "sec-websocket-protocol", "sec-websocket-accept"}
)  # fmt: skip
CONNECT_TIMEOUT = 5.0


def end_to_end_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """`headers` without hop-by-hop ones, including those the Connection header names."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
        if token.strip()
    }
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in _HOP_BY_HOP and name.lower() not in named
    )


def client_session(limit: int = 1000) -> aiohttp.ClientSession:
    """The session a proxy forwards with: no cookies kept, bodies as sent, no proxy env."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        # A shared jar would hand one visitor's cookies to the next.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Bodies pass through byte for byte, compressed or not.
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
        trust_env=False,
    )


def is_websocket(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


def forwarded_headers(
    request: web.Request, *, trust_forwarded: bool, scheme: str | None = None
) -> CIMultiDict[str]:
    """The request's end-to-end headers, with `X-Forwarded-For/-Proto/-Host` set.

    `trust_forwarded`: the request comes from a proxy of ours (the edge), whose
    `X-Forwarded-*` are kept and appended to; otherwise the client's are replaced.
    """
    headers = end_to_end_headers(request.headers)
    peer = request.remote or ""
    earlier = request.headers.get("X-Forwarded-For") if trust_forwarded else None
    headers["X-Forwarded-For"] = f"{earlier}, {peer}" if earlier else peer
    if not (trust_forwarded and "X-Forwarded-Proto" in request.headers):
        headers["X-Forwarded-Proto"] = scheme or request.scheme
    if not (trust_forwarded and "X-Forwarded-Host" in request.headers):
        if request.host:
            headers["X-Forwarded-Host"] = request.host
        else:
            headers.popall("X-Forwarded-Host", None)
    return headers


def upstream_url(base: URL, request: web.Request) -> URL:
    return URL.build(
        scheme=base.scheme,
        host=base.raw_host or "127.0.0.1",
        port=base.port,
        path=request.rel_url.raw_path,
        query_string=request.rel_url.raw_query_string,
        encoded=True,
    )


async def send(
    session: aiohttp.ClientSession, request: web.Request, url: URL, headers: CIMultiDict[str]
) -> aiohttp.ClientResponse:
    """Send `request` on to `url`: the caller relays the answer and releases it."""
    return await session.request(
        request.method,
        url,
        headers=headers,
        data=request.content if request.body_exists else None,
        allow_redirects=False,
        skip_auto_headers=_AUTO_HEADERS,
    )


# Answers up to this size (by Content-Length) are read whole and sent in one write.
_WHOLE = 64 * 1024


async def relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Send the upstream's answer to the client: whole when it is small and its length
    known, otherwise streamed chunk by chunk."""
    length = upstream.content_length
    if length is not None and length <= _WHOLE and request.method != "HEAD":
        try:
            body = await upstream.read()
        except aiohttp.ClientError:
            return error(502, "upstream broke off its answer")
        headers = end_to_end_headers(upstream.headers)
        headers.popall("Content-Length", None)
        return web.Response(
            status=upstream.status, reason=upstream.reason, body=body, headers=headers
        )
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    response.headers.extend(end_to_end_headers(upstream.headers))
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except aiohttp.ClientError:
        # The upstream broke off mid-body: the status is already sent, so the only
        # honest signal left is to cut the connection instead of ending the body.
        response.force_close()
        assert request.transport is not None
        request.transport.close()
        return response
    await response.write_eof()
    return response


async def websocket(
    session: aiohttp.ClientSession, request: web.Request, url: URL, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Open a WebSocket to `url` for the client's upgrade and relay messages both ways.

    The upstream's refusal is the client's answer (its status); an upstream that
    cannot be reached is a 502.
    """
    protocols = [
        p.strip()
        for value in request.headers.getall("Sec-WebSocket-Protocol", [])
        for p in value.split(",")
        if p.strip()
    ]
    for name in list(headers):
        if name.lower() in _WEBSOCKET_HANDSHAKE:
            headers.popall(name, None)
    try:
        upstream = await session.ws_connect(
            url.with_scheme("wss" if url.scheme == "https" else "ws"),
            headers=headers,
            protocols=protocols,
            autoping=True,
            max_msg_size=0,
        )
    except aiohttp.WSServerHandshakeError as exc:
        return error(exc.status if 400 <= exc.status < 600 else 502, "upstream refused the upgrade")
    except aiohttp.ClientConnectionError as exc:
        return error(502, f"upstream unreachable: {type(exc).__name__}")
    async with upstream:
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (),
            autoping=True,
            max_msg_size=0,
        )
        await client.prepare(request)
        pumps = [
            asyncio.create_task(_pump(client, upstream)),
            asyncio.create_task(_pump(upstream, client)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            code = upstream.close_code or client.close_code or aiohttp.WSCloseCode.OK
            with contextlib.suppress(Exception):
                await client.close(code=code)
            with contextlib.suppress(Exception):
                await upstream.close(code=client.close_code or code)
        return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    target: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await target.send_bytes(message.data)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            break
    await target.close(code=source.close_code or aiohttp.WSCloseCode.OK)


def error(status: int, message: str, code: str = "SERVICE_UNAVAILABLE") -> web.Response:
    body = {"error": {"code": code, "message": message, "details": {}}}
    return web.json_response(body, status=status)
