"""`deployforge replay <projection>`: rebuild a read model from the first event."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nats

from deployforge.projections import PROJECTIONS
from deployforge.up import read_endpoints
from libs.eventstore import EventStore
from libs.projections import replay


async def run_replay(name: str, data_dir: Path) -> int:
    factory = PROJECTIONS.get(name)
    if factory is None:
        print(f"unknown projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}")
        return 2
    found = read_endpoints(data_dir)
    nats_url = os.environ.get("DEPLOYFORGE_NATS_URL") or found.get("nats_url")
    database_url = os.environ.get("DEPLOYFORGE_DATABASE_URL") or found.get("database_url")
    if not nats_url or not database_url:
        print("set DEPLOYFORGE_NATS_URL and DEPLOYFORGE_DATABASE_URL, or run `deployforge up`")
        return 2
    nc = await nats.connect(nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=os.environ.get("DEPLOYFORGE_NAMESPACE", ""))
        started = time.perf_counter()
        applied, position = await replay(factory(), database_url, store)
    finally:
        await nc.close()
    elapsed = time.perf_counter() - started
    print(f"replayed {name}: {applied} events to position {position} in {elapsed:.2f}s")
    return 0
