"""Real webhook receivers on loopback: they record every request and answer as told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web
from standardwebhooks.webhooks import Webhook


class Received(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.body)
        return decoded

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


# What a receiver answers to the n-th request (0-based): (status, headers, delay seconds).
Answer = tuple[int, dict[str, str], float]


class Receiver:
    """An HTTP server that records every request and answers as it is told."""

    def __init__(self, answer: Callable[[int], Answer] | None = None) -> None:
        self.answer = answer or (lambda _: (200, {}, 0.0))
        self.requests: list[Received] = []
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        n = len(self.requests)
        self.requests.append(
            Received(
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.read(),
                at=time.monotonic(),
            )
        )
        self._arrived.set()
        status, headers, delay = self.answer(n)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, headers=headers, text=f"answer {n}")

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 20.0
    ) -> list[Received]:
        """Until `predicate(requests)` holds; the requests then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.requests):
            remaining = deadline - loop.time()
            if remaining <= 0:
                types = [r.payload.get("type") for r in self.requests]
                raise AssertionError(f"receiver got {len(self.requests)} requests: {types}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=min(remaining, 0.5))
            except TimeoutError:
                pass
        return self.requests

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.requests if r.payload.get("type") == event_type]


def verify(secret: str, request: Received) -> dict[str, Any]:
    """What a receiver using the reference `standardwebhooks` package does."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


class Receivers:
    def __init__(self) -> None:
        self.started: list[Receiver] = []

    async def __call__(self, answer: Callable[[int], Answer] | None = None) -> Receiver:
        receiver = Receiver(answer)
        await receiver.start()
        self.started.append(receiver)
        return receiver
