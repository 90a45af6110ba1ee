"""The organization's dispatch queue: one per service and environment, N at once.

Pure: decide returns events, evolve folds them; no I/O, clock or ids.
"""

from __future__ import annotations

import msgspec

from libs.events import Event
from services.deploy.events import (
    SlotQueued,
    SlotReleased,
    SlotTaken,
)

HISTORY = 50  # deployments remembered per service and environment, for rollback


class DispatchState(msgspec.Struct, frozen=True, kw_only=True):
    running: dict[str, str] = {}  # deployment id -> "<service>:<environment>"
    queue: tuple[tuple[str, str], ...] = ()  # (deployment id, key), in arrival order
    # key -> the last HISTORY deployments queued for it, oldest first. One key runs
    # one deployment at a time, in arrival order, so this is also the order they end.
    history: dict[str, tuple[str, ...]] = {}


def evolve_dispatch(state: DispatchState, event: Event) -> DispatchState:
    match event:
        case SlotQueued():
            earlier = state.history.get(event.key, ())
            return msgspec.structs.replace(
                state,
                queue=(*state.queue, (event.deployment_id, event.key)),
                history={
                    **state.history,
                    event.key: (*earlier, event.deployment_id)[-HISTORY:],
                },
            )
        case SlotTaken():
            return msgspec.structs.replace(
                state,
                running={**state.running, event.deployment_id: event.key},
                queue=tuple(q for q in state.queue if q[0] != event.deployment_id),
            )
        case SlotReleased():
            return msgspec.structs.replace(
                state,
                running={k: v for k, v in state.running.items() if k != event.deployment_id},
                queue=tuple(q for q in state.queue if q[0] != event.deployment_id),
            )
    return state


def _dispatchable(state: DispatchState, limit: int) -> list[Event]:
    """Start queued deployments in arrival order while slots allow; one that waits
    for its service and environment does not hold up the others."""
    running = dict(state.running)
    events: list[Event] = []
    for deployment_id, key in state.queue:
        if len(running) >= limit:
            break
        if key in running.values():
            continue
        running[deployment_id] = key
        events.append(SlotTaken(deployment_id=deployment_id, key=key))
    return events


def decide_enqueue(
    state: DispatchState, *, deployment_id: str, key: str, limit: int
) -> list[Event]:
    if deployment_id in state.running or any(q[0] == deployment_id for q in state.queue):
        return []
    queued = evolve_dispatch(state, SlotQueued(deployment_id=deployment_id, key=key))
    return [SlotQueued(deployment_id=deployment_id, key=key), *_dispatchable(queued, limit)]


def decide_release(state: DispatchState, *, deployment_id: str, limit: int) -> list[Event]:
    if deployment_id not in state.running and all(q[0] != deployment_id for q in state.queue):
        return []
    released = evolve_dispatch(state, SlotReleased(deployment_id=deployment_id))
    return [SlotReleased(deployment_id=deployment_id), *_dispatchable(released, limit)]


def queue_positions(state: DispatchState) -> dict[str, int]:
    """Each waiting deployment's place in the queue, from 1."""
    return {deployment_id: n for n, (deployment_id, _) in enumerate(state.queue, start=1)}


def in_progress(state: DispatchState, service_id: str) -> list[str]:
    """The service's deployments that wait in the queue or hold a slot."""
    prefix = f"{service_id}:"
    waiting = [d for d, key in state.queue if key.startswith(prefix)]
    return waiting + [d for d, key in state.running.items() if key.startswith(prefix)]


def earlier_deployments(state: DispatchState, key: str, before: str) -> list[str]:
    """The deployments of a service and environment queued before `before`, newest first
    (all of those remembered when `before` is not among them)."""
    ids = list(state.history.get(key, ()))
    if before in ids:
        ids = ids[: ids.index(before)]
    return ids[::-1]
