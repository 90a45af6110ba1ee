"""An agent's stable address alone, as a process: `python -m bench.stable --port P
--upstream U` forwards to 127.0.0.1:U, as the agent's proxy in front of a release does."""

from __future__ import annotations

import argparse
import asyncio
import signal

from services.deploy.proxy import StableProxy


async def _serve(port: int, upstream: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with StableProxy(port=port, upstream=upstream):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
