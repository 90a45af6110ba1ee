"""A deployment's public status: one vocabulary for the API, the WebSocket and webhooks.

Each deployment event moves the deployment to one status; the read model, the
aggregate, the live WebSocket and webhook payloads all take it from here, so
a subscriber never reads `queued` where the API says `created`.
"""

from __future__ import annotations

from collections.abc import Mapping

from libs.events import Event, event_type

# created -> queued -> dispatched -> initializing -> running -> a terminal status.
STATUS_AFTER: Mapping[str, str] = {
    "deployment.created": "created",
    "deployment.queued": "queued",
    "deployment.dispatched": "dispatched",
    "deployment.started": "initializing",
    "deployment.step_started": "running",
    "deployment.step_finished": "running",
    "deployment.succeeded": "succeeded",
    "deployment.failed": "failed",
    "deployment.cancelled": "cancelled",
    "deployment.rolled_back": "rolled_back",
}
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rolled_back"})
STATUSES = tuple(dict.fromkeys(STATUS_AFTER.values()))


def status_after(event: Event) -> str:
    """The deployment's status once `event` (a deployment event) is applied."""
    return STATUS_AFTER[event_type(event)]
