"""Snapshots make long aggregates cheap to load, and never change what a load returns."""

from __future__ import annotations

import nats

from libs.aggregate import Snapshots, load_state, snapshot_bucket
from libs.eventstore import EventStore
from libs.testing import Suite
from services.deploy.decider import DispatchState
from services.deploy.events import STREAM, SlotQueued, SlotReleased, SlotTaken
from services.deploy.handlers import DISPATCH


class CountingStore(EventStore):
    """Counts the events a load reads: what a snapshot saves."""

    read = 0

    async def load(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        loaded = await super().load(*args, **kwargs)
        self.read += len(loaded.events)
        return loaded


async def _history(store: EventStore, org: str, deployments: range) -> None:
    version = (await store.load("dispatch", org, DISPATCH.codec)).version
    for n in deployments:
        events = [
            SlotQueued(deployment_id=f"dpl_{n}", key=f"svc_{n % 3}:env"),
            SlotTaken(deployment_id=f"dpl_{n}", key=f"svc_{n % 3}:env"),
        ]
        if n % 4:  # some stay running
            events.append(SlotReleased(deployment_id=f"dpl_{n}"))
        version = await store.append("dispatch", org, events, expected_version=version)


async def test_a_snapshot_is_read_instead_of_the_history_and_agrees_with_it(suite: Suite) -> None:
    nc = await nats.connect(suite.nats_url)
    try:
        store = CountingStore(nc.jetstream(), namespace=suite.namespace)
        await store.ensure_stream(STREAM)
        kv = await snapshot_bucket(store.js, suite.namespace)
        await _history(store, "org_1", range(60))  # about 165 events

        first = Snapshots(DISPATCH, kv, every=50)
        state, version = await first.load_state(store, "org_1")
        full, full_version = await load_state(store, DISPATCH, "org_1")
        assert (state, version) == (full, full_version)
        assert isinstance(state, DispatchState) and len(state.running) == 15
        await first.save_if_due("org_1")

        # Another replica appends; a fresh process loads the snapshot and what followed.
        await _history(store, "org_1", range(60, 64))
        store.read = 0
        fresh = Snapshots(DISPATCH, kv, every=50)
        state, version = await fresh.load_state(store, "org_1")
        assert store.read == 11  # only the events after the snapshot
        assert (state, version) == await load_state(store, DISPATCH, "org_1")

        # In memory, a second load reads only what is new since the first.
        store.read = 0
        assert await fresh.load_state(store, "org_1") == (state, version)
        assert store.read == 0

        # A missing snapshot only costs time.
        await kv.purge("dispatch.org_1")
        assert await Snapshots(DISPATCH, kv).load_state(store, "org_1") == (state, version)
    finally:
        await nc.close()
