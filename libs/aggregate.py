"""Loading an aggregate's state and retrying decisions that lost a race."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from libs.events import Event, EventCodec, EventContext
from libs.eventstore import ConcurrencyError, EventStore
from libs.kv import file_bucket

S = TypeVar("S")
T = TypeVar("T")


class AggregateType(Generic[S]):
    """How to rebuild one kind of aggregate: its codec, initial state and evolve."""

    def __init__(
        self, name: str, codec: EventCodec[Any], initial: S, evolve: Callable[[S, Event], S]
    ) -> None:
        self.name = name
        self.codec = codec
        self.initial = initial
        self.evolve = evolve


async def load_state(store: EventStore, kind: AggregateType[S], aggregate_id: str) -> tuple[S, int]:
    """The aggregate's current state and version (0 when it has no events yet)."""
    loaded = await store.load(kind.name, aggregate_id, kind.codec)
    state = kind.initial
    for recorded in loaded.events:
        state = kind.evolve(state, recorded.event)
    return state, loaded.version


async def change(
    store: EventStore,
    kind: AggregateType[S],
    aggregate_id: str,
    decide: Callable[[S], Sequence[Event]],
    context: Callable[[S], EventContext],
) -> int | None:
    """Load, decide, append; again if another writer appended in between.

    The stream sequence of the last event appended, or None when the decision
    was to change nothing. `context` gives the events' metadata from the state.
    """
    _, seq = await change_state(store, kind, aggregate_id, decide, context)
    return seq


async def change_state(
    store: EventStore,
    kind: AggregateType[S],
    aggregate_id: str,
    decide: Callable[[S], Sequence[Event]],
    context: Callable[[S], EventContext],
) -> tuple[S, int | None]:
    """As `change`, with the aggregate's state after the decision's events."""

    async def attempt() -> tuple[S, int | None]:
        state, version = await load_state(store, kind, aggregate_id)
        events = decide(state)
        if not events:
            return state, None
        seq = await store.append(
            kind.name, aggregate_id, events, expected_version=version, context=context(state)
        )
        for event in events:
            state = kind.evolve(state, event)
        return state, seq

    return await retry_on_conflict(attempt)


async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], *, attempts: int = 5) -> T:
    """Run load-decide-append again when another writer won; give up with 409 after `attempts`."""
    for _ in range(attempts - 1):
        try:
            return await attempt()
        except ConcurrencyError:
            continue
    return await attempt()


class Snapshots(Generic[S]):
    """One kind of aggregate's states, remembered so that a load reads only newer events.

    States are kept in memory by version, and every `every` events also saved in
    a JetStream key-value bucket, so that a restarted service does not replay a
    long history either. A snapshot is only a cache of what the events say: a
    load always reads every event after it, so a stale or missing one costs
    time, never correctness. The state type must be a msgspec Struct.

    `shape` names the state's layout: raise it when a field is added that older
    snapshots could not have filled from the events before them, and those are
    left unread (each state is rebuilt from all its events once).
    """

    def __init__(
        self,
        kind: AggregateType[S],
        kv: KeyValue | None = None,
        *,
        every: int = 100,
        shape: int = 1,
    ) -> None:
        self.kind = kind
        self.kv = kv
        self.every = every
        self.shape = shape
        self._memory: dict[str, tuple[S, int]] = {}
        self._saved: dict[str, int] = {}
        self._decoder: msgspec.json.Decoder[_Snapshot[Any]] = msgspec.json.Decoder(
            _Snapshot[type(kind.initial)]  # type: ignore[misc]
        )

    def _key(self, aggregate_id: str) -> str:
        if self.shape == 1:
            return f"{self.kind.name}.{aggregate_id}"
        return f"{self.kind.name}.s{self.shape}.{aggregate_id}"

    async def _snapshot(self, aggregate_id: str) -> tuple[S, int]:
        known = self._memory.get(aggregate_id)
        if known is not None or self.kv is None:
            return known or (self.kind.initial, 0)
        try:
            entry = await self.kv.get(self._key(aggregate_id))
        except nats.js.errors.KeyNotFoundError:
            return self.kind.initial, 0
        snapshot = self._decoder.decode(entry.value or b"")
        self._saved[aggregate_id] = snapshot.version
        state: S = snapshot.state
        return state, snapshot.version

    async def load_state(self, store: EventStore, aggregate_id: str) -> tuple[S, int]:
        """The aggregate's current state and version, as `load_state` gives them."""
        state, version = await self._snapshot(aggregate_id)
        loaded = await store.load(self.kind.name, aggregate_id, self.kind.codec, after=version)
        for recorded in loaded.events:
            state = self.kind.evolve(state, recorded.event)
        self.remember(aggregate_id, state, loaded.version)
        return state, loaded.version

    def remember(self, aggregate_id: str, state: S, version: int) -> None:
        """Note a state this process has seen (after its own append, say)."""
        known = self._memory.get(aggregate_id)
        if known is None or known[1] <= version:
            self._memory[aggregate_id] = (state, version)

    async def save_if_due(self, aggregate_id: str) -> None:
        """Write the remembered state to the bucket once it is `every` events past the last."""
        known = self._memory.get(aggregate_id)
        if self.kv is None or known is None:
            return
        state, version = known
        if version - self._saved.get(aggregate_id, 0) < self.every:
            return
        payload = msgspec.json.encode(_Snapshot(version=version, state=state))
        await self.kv.put(self._key(aggregate_id), payload)
        self._saved[aggregate_id] = version


class _Snapshot(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    version: int
    state: T


async def snapshot_bucket(js: JetStreamContext, namespace: str, replicas: int = 1) -> KeyValue:
    """The key-value bucket `<ns>_snapshots` (made on first use)."""
    # Named `snapshots` without a namespace since it first shipped: kept.
    name = f"{namespace}_snapshots" if namespace else "snapshots"
    return await file_bucket(js, name, replicas)
