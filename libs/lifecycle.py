"""Running a process until SIGINT or SIGTERM, the same way in every service."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from libs.logging import configure_logging
from libs.settings import CoreSettings
from libs.tracing import configure_tracing

S = TypeVar("S", bound=CoreSettings)


def run_until_signalled(
    name: str,
    settings: S,
    run: Callable[[S, asyncio.Event], Awaitable[None]],
    *,
    fast_loop: bool = False,
) -> None:
    """Configure logs and traces for `name`, then `run(settings, stop)` until a signal
    sets `stop`; `run` drains and closes what it opened before returning.

    `fast_loop`: run on uvloop (the data plane, where the loop's own cost is most of
    a request's)."""
    configure_logging(name, level=settings.log_level, fmt=settings.log_format)
    configure_tracing(name, console=settings.otel_console)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    if fast_loop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
