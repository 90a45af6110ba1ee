"""From the events other contexts record to the events receivers are sent.

Each public event's `data` is built field by field from an allowlist: a new
field on an internal event never leaks into a webhook by accident, and sealed
secrets, env var values and URL credentials never do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import yarl

from libs.events import Event, Recorded, event_type
from services.deploy import events as deploy
from services.deploy.status import STATUS_AFTER
from services.domains import events as domains
from services.webhooks import events as hooks
from services.webhooks.certificate_payloads import certificate_payload
from services.webhooks.infrastructure_payloads import drift_payload, infrastructure_payload


class PublicEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    type: str
    organization_id: str
    occurred_at: datetime
    data: dict[str, Any]
    # The endpoint this event is about: it is never delivered to that endpoint.
    about_webhook: str | None = None
    # The request behind it (its id) and its trace, carried on to the delivery.
    correlation_id: str | None = None
    traceparent: str | None = None


class DeploymentFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What every deployment event's data repeats, learnt from `deployment.created`."""

    deployment_id: str
    organization_id: str
    project_id: str
    service_id: str
    environment_id: str
    ref: str
    strategy: str
    created_at: datetime
    pipeline_id: str | None = None
    rollback_of: str | None = None


def facts_of(recorded: Recorded[Event]) -> DeploymentFacts | None:
    event = recorded.event
    if not isinstance(event, deploy.DeploymentCreated):
        return None
    return DeploymentFacts(
        deployment_id=event.deployment_id,
        organization_id=event.organization_id,
        project_id=event.project_id,
        service_id=event.service_id,
        environment_id=event.environment_id,
        ref=event.ref,
        strategy=event.strategy,
        created_at=recorded.meta.occurred_at,
        pipeline_id=event.pipeline_id,
        rollback_of=event.rollback_of,
    )


def body(event: PublicEvent) -> str:
    """The JSON a receiver gets: `{"type", "timestamp", "data", "metadata"}`; the
    metadata names the event and the request behind it (`correlation_id`, the
    `X-Request-Id` of the API call that caused it)."""
    metadata = {"event_id": event.event_id, "correlation_id": event.correlation_id}
    return msgspec.json.encode(
        {
            "type": event.type,
            "timestamp": event.occurred_at,
            "data": event.data,
            "metadata": metadata,
        }
    ).decode()


def public_url(url: str) -> str:
    """A repository URL without any credentials in it."""
    try:
        parsed = yarl.URL(url)
    except ValueError:
        return ""
    if parsed.user is None and parsed.password is None:
        return url
    return str(parsed.with_user(None))


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


def _deployment(
    recorded: Recorded[Event], facts: DeploymentFacts
) -> tuple[str, dict[str, Any]] | None:
    event = recorded.event
    at = recorded.meta.occurred_at
    data: dict[str, Any] = {
        "deployment_id": facts.deployment_id,
        "organization_id": facts.organization_id,
        "project_id": facts.project_id,
        "service_id": facts.service_id,
        "environment_id": facts.environment_id,
        "ref": facts.ref,
        "strategy": facts.strategy,
        "status": STATUS_AFTER.get(event_type(event)),
    }
    match event:
        case deploy.DeploymentCreated():
            data |= {
                "pipeline_id": facts.pipeline_id,
                "rollback_of": facts.rollback_of,
            }
            return "deployment.created", data
        case deploy.DeploymentQueued():
            return "deployment.queued", data | {
                "position": event.position,
            }
        case deploy.DeploymentStarted():
            return "deployment.started", data
        case deploy.StepStarted():
            return "deployment.step_started", data | {
                "step": event.name,
            }
        case deploy.StepFinished():
            return "deployment.step_finished", data | {
                "step": event.name,
                "state": event.state,
                "message": event.message,
                "error_message": event.error_message,
                "duration_seconds": event.duration_seconds,
            }
        case deploy.DeploymentSucceeded():
            return "deployment.completed", data | {
                "commit_hash": event.commit_hash,
                "release_id": event.release_id,
                "address": event.address,
                "duration_seconds": event.duration_seconds
                if event.duration_seconds is not None
                else _seconds(facts.created_at, at),
            }
        case deploy.DeploymentFailed():
            return "deployment.failed", data | {
                "reason": event.reason,
                "step": event.step,
                "duration_seconds": _seconds(facts.created_at, at),
            }
        case deploy.DeploymentCancelled():
            return "deployment.cancelled", data | {
                "reason": event.reason,
                "duration_seconds": _seconds(facts.created_at, at),
            }
        case deploy.DeploymentRolledBack():
            return "deployment.rolled_back", data | {
                "by_deployment_id": event.by_deployment_id,
            }
    return None


_SERVICE_CHANGES = frozenset(
    {
        "name",
        "repository_url",
        "branch",
        "runtime",
        "build_command",
        "run_command",
        "port",
        "health_check_path",
        "replicas",
        "resources",
        "dependencies",
        "owner",
    }
)
_ENVIRONMENT_CHANGES = frozenset(
    {
        "name",
        "region",
        "cluster",
        "namespace",
        "configuration",
        "resource_limits",
        "auto_deploy",
        "status",
    }
)


def _allowed(changes: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    kept = {k: v for k, v in changes.items() if k in allowed}
    if isinstance(kept.get("repository_url"), str):
        kept["repository_url"] = public_url(kept["repository_url"])
    return kept


def _resource(recorded: Recorded[Event]) -> tuple[str, dict[str, Any]] | None:
    event = recorded.event
    rid = recorded.meta.aggregate_id
    match event:
        case deploy.ProjectCreated():
            return "project.created", {
                "project_id": rid,
                "name": event.name,
                "slug": event.slug,
                "description": event.description,
            }
        case deploy.ProjectUpdated():
            changes = _allowed(event.changes, frozenset({"name", "description"}))
            return "project.updated", {"project_id": rid, "changes": changes}
        case deploy.ProjectDeleted():
            return "project.deleted", {"project_id": rid}
        case deploy.ServiceCreated():
            return "service.created", {
                "service_id": rid,
                "project_id": event.project_id,
                "name": event.name,
                "repository_url": public_url(event.repository_url),
                "branch": event.branch,
                "runtime": event.runtime,
                "port": event.port,
                "replicas": event.replicas,
            }
        case deploy.ServiceUpdated():
            changes = _allowed(event.changes, _SERVICE_CHANGES)
            return "service.updated", {"service_id": rid, "changes": changes}
        case deploy.ServiceDeleted():
            return "service.deleted", {"service_id": rid}
        case deploy.EnvVarSet():
            # The value is never sent, secret or not: a receiver learns that it changed.
            return "service.env_var_set", {"service_id": rid, "key": event.key}
        case deploy.EnvVarRemoved():
            return "service.env_var_removed", {"service_id": rid, "key": event.key}
        case deploy.ServiceControlRequested():
            return "service.control_requested", {
                "service_id": rid,
                "action": event.action,
                "environment_id": event.environment_id,
            }
        case deploy.EnvironmentCreated():
            return "environment.created", {
                "environment_id": rid,
                "name": event.name,
                "provider": event.provider,
                "type": event.environment_type,
                "region": event.region,
            }
        case deploy.EnvironmentUpdated():
            changes = _allowed(event.changes, _ENVIRONMENT_CHANGES)
            return "environment.updated", {"environment_id": rid, "changes": changes}
        case deploy.EnvironmentStatusChanged():
            return "environment.status_changed", {"environment_id": rid, "status": event.status}
        case deploy.EnvironmentDeleted():
            return "environment.deleted", {"environment_id": rid}
        case domains.DomainAdded():
            return "domain.added", {
                "domain_id": rid,
                "full_domain": event.full_domain,
                "service_id": event.service_id,
                "environment_id": event.environment_id,
                "ssl_enabled": event.ssl_enabled,
                "challenge": event.challenge,
            }
        case domains.DomainUpdated():
            return "domain.updated", {"domain_id": rid, "changes": event.changes}
        case domains.DomainVerified():
            return "domain.verified", {
                "domain_id": rid,
                "full_domain": event.full_domain,
                "dns_configured": event.dns_configured,
            }
        case domains.DomainVerificationFailed():
            return "domain.verification_failed", {
                "domain_id": rid,
                "full_domain": event.full_domain,
                "reason": event.reason,
                "dns_configured": event.dns_configured,
            }
        case domains.DomainRemoved():
            return "domain.removed", {"domain_id": rid, "full_domain": event.full_domain}
    return None


def translate(recorded: Recorded[Event], facts: DeploymentFacts | None) -> PublicEvent | None:
    """The public event for a recorded one, or None for what receivers are not sent.

    Deployment events need the deployment's `facts`; the others ignore them.
    """
    meta = recorded.meta
    about: str | None = None
    found: tuple[str, dict[str, Any]] | None
    if meta.aggregate == "deployment":
        found = _deployment(recorded, facts) if facts is not None else None
    elif meta.aggregate == "webhook" and isinstance(recorded.event, hooks.WebhookDisabled):
        about = meta.aggregate_id
        found = (
            "webhook.endpoint_disabled",
            {
                "webhook_id": meta.aggregate_id,
                "reason": recorded.event.reason,
            },
        )
    elif meta.aggregate == "delivery" and isinstance(recorded.event, hooks.DeliveryExhausted):
        exhausted = recorded.event
        about = exhausted.webhook_id
        found = (
            "webhook.delivery_exhausted",
            {
                "delivery_id": meta.aggregate_id,
                "webhook_id": exhausted.webhook_id,
                "event_id": exhausted.event_id,
                "event_type": exhausted.event_type,
                "attempts": exhausted.attempts,
                "last_error": exhausted.last_error,
            },
        )
    elif meta.aggregate == "certificate":
        found = certificate_payload(recorded)
    elif meta.aggregate == "resource":
        found = infrastructure_payload(recorded)
    elif meta.aggregate in ("scan", "finding"):
        found = drift_payload(recorded)
    else:
        found = _resource(recorded)
    organization = meta.organization_id or (facts.organization_id if facts else None)
    if found is None or organization is None:
        return None
    kind, data = found
    return PublicEvent(
        event_id=meta.event_id,
        type=kind,
        organization_id=organization,
        occurred_at=meta.occurred_at,
        data=data,
        about_webhook=about,
        correlation_id=meta.correlation_id,
        traceparent=meta.traceparent,
    )
