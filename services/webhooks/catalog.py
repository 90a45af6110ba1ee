"""The public event catalog: the names an endpoint can subscribe to.

Subscriptions are names (`deployment.failed`), a context's wildcard
(`deployment.*`) or everything (`*`). Names of contexts that do not publish
yet (SSL, drift, health) are accepted, so that an endpoint can be set
up before they arrive.
"""

from __future__ import annotations

from collections.abc import Iterable

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "deployment.created",
        "deployment.queued",
        "deployment.started",
        "deployment.step_started",
        "deployment.step_finished",
        "deployment.completed",
        "deployment.failed",
        "deployment.cancelled",
        "deployment.rolled_back",
        "project.created",
        "project.updated",
        "project.deleted",
        "service.created",
        "service.updated",
        "service.deleted",
        "service.env_var_set",
        "service.env_var_removed",
        "service.control_requested",
        "environment.created",
        "environment.updated",
        "environment.status_changed",
        "environment.deleted",
        "health.degraded",
        "health.recovered",
        "domain.added",
        "domain.updated",
        "domain.verified",
        "domain.verification_failed",
        "domain.removed",
        "ssl.requested",
        "ssl.issued",
        "ssl.renewed",
        "ssl.expiring",
        "ssl.failed",
        "ssl.revoked",
        "infrastructure.resource_requested",
        "infrastructure.resource_provisioned",
        "infrastructure.resource_updated",
        "infrastructure.resource_failed",
        "infrastructure.resource_deleted",
        "drift.scan_requested",
        "drift.scan_completed",
        "drift.scan_failed",
        "drift.scan_skipped",
        "drift.detected",
        "drift.resolved",
        "webhook.delivery_exhausted",
        "webhook.endpoint_disabled",
        "webhook.ping",
    }
)
CONTEXTS: frozenset[str] = frozenset(name.partition(".")[0] for name in EVENT_TYPES)


def filter_error(pattern: str) -> str | None:
    """Why `pattern` is not a subscription, or None when it is one."""
    if pattern == "*" or pattern in EVENT_TYPES:
        return None
    context, dot, rest = pattern.partition(".")
    if dot and rest == "*" and context in CONTEXTS:
        return None
    return (
        f"unknown event type {pattern!r}: "
        "use a name such as 'deployment.failed', 'deployment.*' or '*'"
    )


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription to `patterns` receives `event_type`.

    The ping of `POST /v1/webhooks/{id}/test` is sent whatever the subscription.
    """
    if event_type == "webhook.ping":
        return True
    context = event_type.partition(".")[0]
    return any(p in ("*", event_type, f"{context}.*") for p in patterns)
