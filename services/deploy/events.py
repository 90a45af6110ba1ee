"""The events of the deploy context, one tagged union per aggregate.

Secrets (environment credentials, secret env var values) appear only sealed
with the suite's master key, never in clear.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.events import Event, EventCodec
from libs.eventstore import StreamSpec

STREAM = StreamSpec(
    context="deploy",
    aggregates=(
        "environment",
        "project",
        "service",
        "deployment",
        "dispatch",
        "project_slug",
        "pipeline",
    ),
    bookkeeping=frozenset(
        {
            "dispatch",
            "project_slug",
            "project.service_added",
            "deployment.queued",
            "deployment.dispatched",
        }
    ),
)


# environment.<id>
class EnvironmentCreated(Event, frozen=True, kw_only=True, tag="environment.created"):
    environment_id: str
    organization_id: str
    name: str
    provider: str
    # "type" is every event's tag field, so the environment's type is spelled out.
    environment_type: str
    region: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    configuration: dict[str, Any] = {}
    resource_limits: dict[str, Any] = {}
    auto_deploy: bool = False
    credentials_sealed: str | None = None


class EnvironmentUpdated(Event, frozen=True, kw_only=True, tag="environment.updated"):
    # Only the fields that changed; credentials_sealed replaces the old ones.
    changes: dict[str, Any]
    credentials_sealed: str | None = None


class EnvironmentStatusChanged(Event, frozen=True, kw_only=True, tag="environment.status_changed"):
    status: str


class EnvironmentDeleted(Event, frozen=True, kw_only=True, tag="environment.deleted"):
    pass


EnvironmentEvent = (
    EnvironmentCreated | EnvironmentUpdated | EnvironmentStatusChanged | EnvironmentDeleted
)


# project.<id>
class ProjectCreated(Event, frozen=True, kw_only=True, tag="project.created"):
    project_id: str
    organization_id: str
    name: str
    slug: str
    description: str = ""
    # Projects created before `project.service_added` existed do not list their
    # services in their own history; their delete guard asks the read model.
    lists_services: bool = False


class ProjectUpdated(Event, frozen=True, kw_only=True, tag="project.updated"):
    changes: dict[str, Any]


class ProjectDeleted(Event, frozen=True, kw_only=True, tag="project.deleted"):
    pass


class ProjectServiceAdded(Event, frozen=True, kw_only=True, tag="project.service_added"):
    """A service is being created in the project: appended before `service.created`,
    so that a project is never deleted while one of its services is being made."""

    service_id: str


ProjectEvent = ProjectCreated | ProjectUpdated | ProjectDeleted | ProjectServiceAdded


# project_slug.<organization_id>.<slug> would need two tokens; the id is "<org>~<slug>".
class ProjectSlugClaimed(Event, frozen=True, kw_only=True, tag="project_slug.claimed"):
    project_id: str


# service.<id>
class ServiceCreated(Event, frozen=True, kw_only=True, tag="service.created"):
    service_id: str
    organization_id: str
    project_id: str
    name: str
    repository_url: str
    branch: str = "main"
    runtime: str | None = None
    build_command: list[str] = []
    run_command: list[str] = []
    port: int | None = None
    health_check_path: str = "/"
    replicas: int = 1
    resources: dict[str, Any] = {}
    dependencies: list[str] = []
    owner: str | None = None


class ServiceUpdated(Event, frozen=True, kw_only=True, tag="service.updated"):
    changes: dict[str, Any]


class EnvVarSet(Event, frozen=True, kw_only=True, tag="service.env_var_set"):
    key: str
    secret: bool
    # Exactly one of these: a secret's value is only ever stored sealed.
    value: str | None = None
    value_sealed: str | None = None


class EnvVarRemoved(Event, frozen=True, kw_only=True, tag="service.env_var_removed"):
    key: str


class ServiceDeleted(Event, frozen=True, kw_only=True, tag="service.deleted"):
    pass


class ServiceControlRequested(Event, frozen=True, kw_only=True, tag="service.control_requested"):
    """Start, stop or restart the running release; the agents running it act on it."""

    action: str  # start | stop | restart
    environment_id: str | None = None  # None: every environment


class InstanceControlRequested(
    Event, frozen=True, kw_only=True, tag="service.instance_control_requested"
):
    """Start, stop, restart or remove one instance; the agent running it acts on it."""

    instance_id: str
    environment_id: str
    action: str  # start | stop | restart | remove


ServiceEvent = (
    ServiceCreated
    | ServiceUpdated
    | EnvVarSet
    | EnvVarRemoved
    | ServiceDeleted
    | ServiceControlRequested
    | InstanceControlRequested
)


# deployment.<id>
class DeploymentCreated(Event, frozen=True, kw_only=True, tag="deployment.created"):
    deployment_id: str
    organization_id: str
    project_id: str
    service_id: str
    environment_id: str
    ref: str
    strategy: str
    notify_channels: list[str] = []
    config: dict[str, Any] = {}
    # Set on a rollback: the deployment whose release is deployed again, and the
    # deployment being rolled back (marked rolled_back once this one succeeds).
    rollback_of: str | None = None
    replaces: str | None = None
    pipeline_id: str | None = None


class DeploymentQueued(Event, frozen=True, kw_only=True, tag="deployment.queued"):
    position: int


class DeploymentDispatched(Event, frozen=True, kw_only=True, tag="deployment.dispatched"):
    pass


class DeploymentStarted(Event, frozen=True, kw_only=True, tag="deployment.started"):
    agent_id: str


class StepStarted(Event, frozen=True, kw_only=True, tag="deployment.step_started"):
    name: str


class StepFinished(Event, frozen=True, kw_only=True, tag="deployment.step_finished"):
    name: str
    state: str  # success | failure
    message: str = ""
    error_message: str = ""
    duration_seconds: float | None = None


class DeploymentSucceeded(Event, frozen=True, kw_only=True, tag="deployment.succeeded"):
    commit_hash: str | None = None
    release_id: str | None = None
    duration_seconds: float | None = None
    # The stable address now serving this release (agent deployments).
    address: str | None = None


class DeploymentFailed(Event, frozen=True, kw_only=True, tag="deployment.failed"):
    reason: str
    step: str | None = None


class DeploymentCancelled(Event, frozen=True, kw_only=True, tag="deployment.cancelled"):
    reason: str = "cancelled"


class DeploymentRolledBack(Event, frozen=True, kw_only=True, tag="deployment.rolled_back"):
    # The deployment whose success replaced this one.
    by_deployment_id: str


DeploymentEvent = (
    DeploymentCreated
    | DeploymentQueued
    | DeploymentDispatched
    | DeploymentStarted
    | StepStarted
    | StepFinished
    | DeploymentSucceeded
    | DeploymentFailed
    | DeploymentCancelled
    | DeploymentRolledBack
)


# pipeline.<id>: named ordered steps for a service; a run is a deployment of them.
class PipelineStepSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    command: list[str]


class PipelineCreated(Event, frozen=True, kw_only=True, tag="pipeline.created"):
    pipeline_id: str
    organization_id: str
    service_id: str
    name: str
    steps: list[PipelineStepSpec]


class PipelineUpdated(Event, frozen=True, kw_only=True, tag="pipeline.updated"):
    # Only what changed: a new name, or the whole new list of steps.
    name: str | None = None
    steps: list[PipelineStepSpec] | None = None


class PipelineDeleted(Event, frozen=True, kw_only=True, tag="pipeline.deleted"):
    pass


PipelineEvent = PipelineCreated | PipelineUpdated | PipelineDeleted


# dispatch.<organization_id>: the organization's queue and running slots.
class SlotQueued(Event, frozen=True, kw_only=True, tag="dispatch.queued"):
    deployment_id: str
    key: str  # "<service_id>:<environment_id>"


class SlotTaken(Event, frozen=True, kw_only=True, tag="dispatch.taken"):
    deployment_id: str
    key: str


class SlotReleased(Event, frozen=True, kw_only=True, tag="dispatch.released"):
    deployment_id: str


DispatchEvent = SlotQueued | SlotTaken | SlotReleased


CODECS: dict[str, EventCodec[Event]] = {
    "environment": EventCodec(EnvironmentEvent),
    "project": EventCodec(ProjectEvent),
    "project_slug": EventCodec(ProjectSlugClaimed),
    "service": EventCodec(ServiceEvent),
    "deployment": EventCodec(DeploymentEvent),
    "dispatch": EventCodec(DispatchEvent),
    "pipeline": EventCodec(PipelineEvent),
}
