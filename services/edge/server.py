"""The edge's listeners: HTTP and HTTPS, one handler deciding what each request gets."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
from aiohttp import web
from prometheus_client import Counter
from yarl import URL

from libs import http_forward
from services.edge.certificates import SNI_ATTRIBUTE, CertificateStore
from services.edge.routing import Answer, EdgeState, Forward, Redirect, decide

REQUESTS = Counter(
    "deployforge_edge_requests_total", "Requests the edge answered, by outcome", ["outcome"]
)
_RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SHUTDOWN_TIMEOUT = 5.0


class EdgeServer:
    """Serves `state` and `certificates` on an HTTP and an HTTPS port (0: the kernel picks)."""

    def __init__(
        self,
        state: EdgeState,
        certificates: CertificateStore,
        *,
        host: str,
        http_port: int,
        https_port: int,
        public_https_port: int | None = None,
    ) -> None:
        self.state = state
        self.certificates = certificates
        self.host = host
        self.http_port = http_port
        self.https_port = https_port
        # The port HTTP is redirected to, as clients reach it (443 behind a port mapping).
        self._public_https_port = public_https_port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def public_https_port(self) -> int:
        return self._public_https_port or self.https_port

    async def start(self) -> None:
        self._session = http_forward.client_session()
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        try:
            await self._runner.setup()
            http = web.TCPSite(self._runner, self.host, self.http_port)
            https = web.TCPSite(
                self._runner, self.host, self.https_port, ssl_context=self.certificates.listening
            )
            await http.start()
            await https.start()
        except BaseException:
            await self.close()
            raise
        # One address per site, in the order they were started (HTTP, then HTTPS).
        http_address, https_address = self._runner.addresses[:2]
        self.http_port, self.https_port = int(http_address[1]), int(https_address[1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        tls = isinstance(ssl_object, ssl.SSLObject)
        action = decide(
            self.state,
            tls=tls,
            host_header=request.host or "",
            sni=getattr(ssl_object, SNI_ATTRIBUTE, None) if tls else None,
            method=request.method,
            path_qs=request.rel_url.raw_path_qs,
            https_port=self.public_https_port,
        )
        match action:
            case Answer(status=status, text=text):
                REQUESTS.labels(str(status)).inc()
                return web.Response(status=status, text=text, content_type="text/plain")
            case Redirect(location=location, status=status):
                REQUESTS.labels("redirect").inc()
                raise (web.HTTPMovedPermanently if status == 301 else web.HTTPPermanentRedirect)(
                    location=location, text=f"moved to {location}\n"
                )
            case Forward(address=address):
                return await self._forward(request, URL(address), scheme="https" if tls else "http")
        raise AssertionError(action)

    async def _forward(self, request: web.Request, base: URL, scheme: str) -> web.StreamResponse:
        assert self._session is not None
        url = http_forward.upstream_url(base, request)
        headers = http_forward.forwarded_headers(request, trust_forwarded=False, scheme=scheme)
        if http_forward.is_websocket(request):
            REQUESTS.labels("websocket").inc()
            return await http_forward.websocket(self._session, request, url, headers)
        retryable = request.method in _RETRYABLE_METHODS and not request.body_exists
        for attempt in (1, 2):
            try:
                upstream = await http_forward.send(self._session, request, url, headers)
            except aiohttp.ClientConnectionError as exc:
                if retryable and attempt == 1:
                    await asyncio.sleep(0.05)
                    continue
                REQUESTS.labels("502").inc()
                return http_forward.error(502, f"upstream unreachable: {type(exc).__name__}")
            REQUESTS.labels("forwarded").inc()
            try:
                return await http_forward.relay(request, upstream)
            finally:
                upstream.release()
        raise AssertionError("unreachable")
