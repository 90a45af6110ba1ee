"""One host for every bounded context: a context declares itself, the host runs it.

A `Context` says what a service is: its name, the streams it owns, its read
models, its settings, and `wire`, the composition root that builds its
adapters and returns its command endpoints and background loops. `run` does
the rest the same way for every context: connection, streams, commands,
projections, loops, metrics, readiness, and a graceful drain when `stop` is
set (SIGTERM or SIGINT under `main`).

Start order: streams, then `wire` (which may create durable consumers and
caches before anything is served), then the command endpoints, then the
background loops and projection runners. `ready` is set once commands are
served and each read model is leading (or standing by behind another
replica's lead, after at most 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import structlog
from nats.aio.client import Client as NATS

from libs.eventstore import EventStore, StreamSpec
from libs.lifecycle import run_until_signalled
from libs.messaging import Endpoint, connect_nats, serve
from libs.metrics import start_metrics_server
from libs.projections import Projection, ProjectionRunner
from libs.settings import CoreSettings, load_settings

S = TypeVar("S", bound=CoreSettings)
Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

log = structlog.get_logger("host")


@dataclass(frozen=True)
class Resources(Generic[S]):
    """What the host opened for a context's `wire`: close what you open on `stack`."""

    settings: S
    nc: NATS
    store: EventStore
    stack: AsyncExitStack


@dataclass(frozen=True)
class Wiring:
    """What a context's composition root hands the host."""

    endpoints: Mapping[str, Endpoint[Any]]
    # Background loops, each running until the event it is given is set.
    loops: Sequence[Loop] = ()


@dataclass(frozen=True)
class Context(Generic[S]):
    """A bounded context as one declaration."""

    # The process and its commands' service name (`<ns>.df.<name>.<command>`).
    name: str
    settings: type[S]
    streams: tuple[StreamSpec, ...]
    # Its read models (run when `settings.run_projection`, the default).
    projections: tuple[Callable[[], Projection], ...]
    wire: Callable[[Resources[S]], Awaitable[Wiring]]
    # The module `python -m` runs for this context (deployforge up, compose).
    module: str = ""
    # Other stream specs it reads but does not own (registered, not created).
    follows: tuple[StreamSpec, ...] = field(default=())

    async def run(
        self, settings: S, stop: asyncio.Event, ready: asyncio.Event | None = None
    ) -> None:
        """Serve until `stop` is set, then drain and close everything."""
        await run(self, settings, stop, ready)

    def main(self) -> None:
        """The process entry point: settings from the environment, until a signal."""
        run_until_signalled(self.name, load_settings(self.settings), partial(run, self))


async def run(
    context: Context[S], settings: S, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    async with AsyncExitStack() as stack:
        nc = await connect_nats(settings, context.name)
        stack.push_async_callback(nc.drain)
        store = EventStore(
            nc.jetstream(), namespace=settings.namespace, replicas=settings.stream_replicas
        )
        for spec in context.streams:
            await store.ensure_stream(spec)
        for spec in context.follows:
            store.register(spec)
        wiring = await context.wire(Resources(settings, nc, store, stack))
        server = await serve(
            nc,
            service=context.name,
            namespace=settings.namespace,
            version="0.1.0",
            endpoints=wiring.endpoints,
        )
        # Stops taking commands first, and lets those in flight reply.
        stack.push_async_callback(server.stop)
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(loop(stop)) for loop in wiring.loops]
        if getattr(settings, "run_projection", True):
            runners = [
                ProjectionRunner(factory(), settings.database_url, store)
                for factory in context.projections
            ]
            tasks += [asyncio.create_task(r.run(stop)) for r in runners]
            for runner in runners:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runner.leading.wait(), timeout=5)
        if settings.metrics_port:
            metrics = await start_metrics_server(settings.metrics_host, settings.metrics_port)
            stack.push_async_callback(metrics.cleanup)
        log.info(f"{context.name}_ready", namespace=settings.namespace)
        if ready is not None:
            ready.set()
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
    log.info(f"{context.name}_stopped")
