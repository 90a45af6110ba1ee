"""An HTTP load generator that runs in a process of its own.

The client is an aiohttp session with N keep-alive connections; a spawned
worker process runs it, so the client's CPU is never taken from the server's
event loop (on a 2-core machine, each gets about one core). Every target in
a run is driven by the same generator, so baselines and the gateway are
measured alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import ssl
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType

import aiohttp
import msgspec
import yarl

from bench.drive import Operation, Run, drive, drive_at_rate


class LoadSpec(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    connections: int = 32
    duration: float = 6.0
    warmup: float = 1.0
    # None: closed loop, as fast as the connections allow. Else requests per second.
    rate: float | None = None
    # An https URL: the name sent in SNI (certificates are not verified: a benchmark).
    server_hostname: str = ""
    # Not requests but TLS handshakes: each operation opens a connection to the URL's
    # host and port with the next of these names in SNI, completes the handshake, closes.
    handshake_names: list[str] = msgspec.field(default_factory=list)


class HTTPStatusError(Exception):
    pass


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _handshake(spec: LoadSpec) -> Operation:
    url = yarl.URL(spec.url)
    context, names = _unverified(), spec.handshake_names
    counter = itertools.count()

    async def op(_: int) -> None:
        name = names[next(counter) % len(names)]
        _reader, writer = await asyncio.open_connection(
            url.host, url.port, ssl=context, server_hostname=name
        )
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()

    return op


def _get(http: aiohttp.ClientSession, spec: LoadSpec) -> Operation:
    tls = _unverified() if spec.server_hostname else True

    async def op(_: int) -> None:
        async with http.get(
            spec.url, ssl=tls, server_hostname=spec.server_hostname or None
        ) as response:
            await response.read()
            if response.status >= 400:
                raise HTTPStatusError(f"HTTP {response.status}")

    return op


async def _phase(op: Operation, spec: LoadSpec, duration: float) -> Run:
    if spec.rate is None:
        return await drive(op, workers=spec.connections, duration=duration)
    return await drive_at_rate(op, workers=spec.connections, duration=duration, rate=spec.rate)


async def _load(spec: LoadSpec) -> Run:
    connector = aiohttp.TCPConnector(limit=spec.connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, headers=spec.headers, timeout=timeout
    ) as http:
        op = _handshake(spec) if spec.handshake_names else _get(http, spec)
        if spec.warmup > 0:
            await _phase(op, spec, spec.warmup)
        return await _phase(op, spec, spec.duration)


def run_load(spec: LoadSpec) -> Run:
    """Entry point in the load process: every request's latency, and the failures."""
    return asyncio.run(_load(spec))


class LoadGenerator:
    """One spawned worker process that runs each `LoadSpec` handed to it."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )

    async def __aenter__(self) -> LoadGenerator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def run(self, spec: LoadSpec) -> Run:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, run_load, spec)
