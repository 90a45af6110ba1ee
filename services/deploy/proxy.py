"""The stable address of a service in an environment: a reverse proxy whose upstream moves.

Traffic moves to a new release by pointing the proxy at its port: requests that
arrive afterwards go to the new release, requests already in flight finish on
the old one, and `drain()` says when the old one may be stopped. That is what
lets a blue-green deployment run without a single failed request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from libs import http_forward

# Replaying a request is safe only when it has no body and no effect.
_RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SHUTDOWN_TIMEOUT = 5.0


class StableProxy:
    """An HTTP reverse proxy on host:port that forwards to `http://<upstream_host>:<upstream>`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        upstream: int | None = None,
        upstream_host: str = "127.0.0.1",
    ) -> None:
        """`port` 0 lets the kernel pick; `upstream` None answers 503 until set_upstream()."""
        self.host = host
        self._port = port
        self._upstream = upstream
        self._upstream_host = upstream_host
        self._in_flight: collections.Counter[int] = collections.Counter()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def port(self) -> int:
        """The port clients connect to (the kernel's pick once started, if 0 was asked for)."""
        return self._port

    @property
    def upstream(self) -> int | None:
        """The port new requests go to, or None."""
        return self._upstream

    async def start(self) -> None:
        """Open the client session and start listening."""
        self._session = http_forward.client_session()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        try:
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self._port).start()
        except BaseException:
            await self.close()
            raise
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening, let in-flight requests finish (briefly), close the session."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> StableProxy:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def set_upstream(self, port: int | None) -> int | None:
        """Send new requests to `port` (None: answer 503); return the previous upstream.

        The switch is a single assignment: each request reads the upstream once,
        so none is split between releases.
        """
        previous, self._upstream = self._upstream, port
        return previous

    def in_flight(self, port: int) -> int:
        """How many requests are being forwarded to `port` right now."""
        return self._in_flight[port]

    async def drain(self, port: int, timeout: float) -> bool:
        """Wait until no request is in flight to `port`; False if some still are after `timeout`."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._in_flight[port] == 0), timeout
                )
            except TimeoutError:
                return False
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if http_forward.is_websocket(request):
            port = self._upstream
            if port is None:
                return http_forward.error(503, "no release is serving this address")
            assert self._session is not None
            async with self._tracking(port):
                return await http_forward.websocket(
                    self._session, request, self._url(request, port), self._headers(request)
                )
        retryable = request.method in _RETRYABLE_METHODS and not request.body_exists
        for attempt in (1, 2):
            port = self._upstream
            if port is None:
                return http_forward.error(503, "no release is serving this address")
            async with self._tracking(port):
                try:
                    upstream = await self._send(request, port)
                except aiohttp.ClientConnectionError as exc:
                    # Nothing of the request reached an application yet: if it may be
                    # replayed, try once more, on whatever the upstream is by now.
                    if retryable and attempt == 1:
                        continue
                    return http_forward.error(502, f"upstream unreachable: {type(exc).__name__}")
                try:
                    return await http_forward.relay(request, upstream)
                finally:
                    upstream.release()
        raise AssertionError("unreachable")

    def _url(self, request: web.Request, port: int) -> URL:
        return http_forward.upstream_url(
            URL.build(scheme="http", host=self._upstream_host, port=port), request
        )

    def _headers(self, request: web.Request) -> CIMultiDict[str]:
        # Behind the edge, the edge's X-Forwarded-* describe the client: kept.
        return http_forward.forwarded_headers(request, trust_forwarded=True)

    async def _send(self, request: web.Request, port: int) -> aiohttp.ClientResponse:
        assert self._session is not None
        return await http_forward.send(
            self._session, request, self._url(request, port), self._headers(request)
        )

    @contextlib.asynccontextmanager
    async def _tracking(self, port: int) -> AsyncIterator[None]:
        self._in_flight[port] += 1
        try:
            yield
        finally:
            self._in_flight[port] -= 1
            if self._in_flight[port] == 0:
                del self._in_flight[port]
                async with self._changed:
                    self._changed.notify_all()


class ProxyTable:
    """The stable addresses of one agent, keyed by route name (`<service_id>:<environment_id>`)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._proxies: dict[str, StableProxy] = {}

    async def ensure(self, route: str, listen_port: int) -> StableProxy:
        """The proxy of `route`, listening on `listen_port`; started (or moved there) if need be."""
        proxy = self._proxies.get(route)
        if proxy is not None and proxy.port == listen_port:
            return proxy
        upstream = proxy.upstream if proxy is not None else None
        if proxy is not None:
            await self.remove(route)
        proxy = StableProxy(self.host, listen_port, upstream=upstream)
        await proxy.start()
        self._proxies[route] = proxy
        return proxy

    def get(self, route: str) -> StableProxy | None:
        """The proxy of `route`, if there is one."""
        return self._proxies.get(route)

    def routes(self) -> Iterable[str]:
        """The names of the routes served."""
        return list(self._proxies)

    def switch(self, route: str, upstream_port: int | None) -> int | None:
        """Move `route`'s new requests to `upstream_port`; return the previous upstream port."""
        proxy = self._proxies.get(route)
        if proxy is None:
            raise KeyError(f"no stable address for route {route!r}")
        return proxy.set_upstream(upstream_port)

    async def remove(self, route: str) -> None:
        """Stop serving `route`'s address."""
        proxy = self._proxies.pop(route, None)
        if proxy is not None:
            await proxy.close()

    async def close(self) -> None:
        """Stop every proxy."""
        proxies, self._proxies = list(self._proxies.values()), {}
        await asyncio.gather(*(proxy.close() for proxy in proxies))
