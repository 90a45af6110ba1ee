"""`deployforge replay <projection>`: rebuild a read model from the first event."""

from __future__ import annotations

import time
from pathlib import Path

from deployforge.projections import PROJECTIONS
from deployforge.up import operator_settings
from libs.eventstore import EventStore
from libs.messaging import connect_nats
from libs.replay import replay


async def run_replay(name: str, data_dir: Path) -> int:
    factory = PROJECTIONS.get(name)
    if factory is None:
        print(f"unknown projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}")
        return 2
    # DEPLOYFORGE_* (credentials included) first, else the servers a running `up` uses.
    settings = operator_settings(data_dir)
    nc = await connect_nats(settings, "replay")
    try:
        store = EventStore(nc.jetstream(), namespace=settings.namespace)
        started = time.perf_counter()
        applied, position = await replay(factory(), settings.database_url, store)
    finally:
        await nc.close()
    elapsed = time.perf_counter() - started
    print(f"replayed {name}: {applied} events to position {position} in {elapsed:.2f}s")
    return 0
