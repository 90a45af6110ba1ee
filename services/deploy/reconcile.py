"""Which step a deployment and its organization's queue still lack: a pure decision.

The dispatch process (dispatch_process.py) and the commands both act on it;
every step is idempotent, so doing one twice changes nothing twice.
"""

from __future__ import annotations

import msgspec

from services.deploy import decider as d
from services.deploy.events import SlotQueued, SlotReleased, SlotTaken
from services.deploy.status import TERMINAL

# What can leave a deployment out of line with its queue; step reports cannot.
WATCHED = frozenset(
    {
        "deployment.created",
        "deployment.queued",
        "deployment.dispatched",
        "deployment.succeeded",
        "deployment.failed",
        "deployment.cancelled",
        "dispatch.queued",
        "dispatch.taken",
        "dispatch.released",
    }
)


class Enqueue(msgspec.Struct, frozen=True, tag="enqueue"):
    """Put the deployment in its organization's queue (which may start it at once)."""


class MarkQueued(msgspec.Struct, frozen=True, tag="mark_queued"):
    """Tell the deployment (and its subscribers) it waits for a slot."""


class Dispatch(msgspec.Struct, frozen=True, tag="dispatch"):
    """Mark the deployment dispatched if it is not yet, and hand its job to the agents."""


class Release(msgspec.Struct, frozen=True, tag="release"):
    """Give its slot (or its place in the queue) back."""


Step = Enqueue | MarkQueued | Dispatch | Release
WAITING = ("created", "queued")


def reconcile(deployment: d.DeploymentState, queue: d.DispatchState) -> list[Step]:
    """The steps that bring one deployment and its organization's queue in line."""
    deployment_id = deployment.deployment_id
    if deployment_id is None:
        return []
    held = deployment_id in queue.running
    waiting = any(q[0] == deployment_id for q in queue.queue)
    if deployment.status in TERMINAL:
        return [Release()] if held or waiting else []
    if held:
        # Dispatched already: the job may still be unpublished (publishing is deduplicated).
        return [Dispatch()] if deployment.status in (*WAITING, "dispatched") else []
    if waiting:
        return [MarkQueued()] if deployment.status == "created" else []
    # Neither queued nor running: only a deployment that has not started belongs in the queue.
    return [Enqueue()] if deployment.status in WAITING else []


def deployment_of(aggregate: str, aggregate_id: str, event: object) -> str | None:
    """The deployment an event is about."""
    if aggregate == "deployment":
        return aggregate_id
    if isinstance(event, SlotQueued | SlotTaken | SlotReleased):
        return event.deployment_id
    return None
