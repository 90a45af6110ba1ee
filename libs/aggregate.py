"""Loading an aggregate's state and retrying decisions that lost a race."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from libs.events import Event, EventCodec
from libs.eventstore import ConcurrencyError, EventStore

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


async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], *, attempts: int = 5) -> T:
    """Run load-decide-append again when another writer won; give up with 409 after `attempts`."""
    for _ in range(attempts - 1):
        try:
            return await attempt()
        except ConcurrencyError:
            continue
    return await attempt()
