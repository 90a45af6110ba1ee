"""The commands the deploy service accepts over NATS (and the HTTP bodies behind them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from services.deploy.events import PipelineStepSpec

Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Name = Annotated[str, Meta(min_length=1, max_length=100)]
Slug = Annotated[
    str, Meta(min_length=2, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
]
Text = Annotated[str, Meta(max_length=2000)]
Config = Annotated[dict[str, Any], Meta(max_length=100)]
# A command is an argv list, or a string split like a shell would but never run by one.
CommandLine = (
    Annotated[str, Meta(min_length=1, max_length=4096)]
    | Annotated[list[Annotated[str, Meta(max_length=4096)]], Meta(min_length=1, max_length=256)]
)
Provider = Literal["local", "aws", "gcp", "azure"]
EnvironmentType = Literal["production", "staging", "development", "preview"]
Strategy = Literal["recreate", "rolling", "blue-green"]


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class CreateEnvironment(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id | None = None
    name: Name
    provider: Provider = "local"
    type: EnvironmentType = "development"
    region: Annotated[str, Meta(max_length=64)] | None = None
    cluster: Annotated[str, Meta(max_length=128)] | None = None
    namespace: Annotated[str, Meta(max_length=128)] | None = None
    configuration: Config = {}
    resource_limits: Config = {}
    auto_deploy: bool = False
    # Write-only: sealed at rest, never returned.
    credentials: Config | None = None


class UpdateEnvironment(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: Id
    name: Name | None = None
    region: Annotated[str, Meta(max_length=64)] | None = None
    cluster: Annotated[str, Meta(max_length=128)] | None = None
    namespace: Annotated[str, Meta(max_length=128)] | None = None
    configuration: Config | None = None
    resource_limits: Config | None = None
    auto_deploy: bool | None = None
    status: Literal["active", "inactive"] | None = None
    credentials: Config | None = None


class DeleteEnvironment(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: Id


class CreateProject(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id | None = None
    name: Name
    slug: Slug | None = None
    description: Text = ""


class UpdateProject(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_id: Id
    name: Name | None = None
    description: Text | None = None


class DeleteProject(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_id: Id


class CreateService(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_id: Id
    name: Name
    repository_url: Annotated[str, Meta(min_length=1, max_length=2048)]
    branch: Annotated[str, Meta(min_length=1, max_length=255)] = "main"
    runtime: Annotated[str, Meta(max_length=64)] | None = None
    build_command: CommandLine | None = None
    run_command: CommandLine
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    health_check_path: Annotated[str, Meta(max_length=512, pattern=r"^/")] = "/"
    replicas: Annotated[int, Meta(ge=1, le=20)] = 1
    resources: Config = {}
    dependencies: Annotated[list[Id], Meta(max_length=50)] = []
    owner: Annotated[str, Meta(max_length=200)] | None = None


class UpdateService(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id
    name: Name | None = None
    repository_url: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    branch: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    runtime: Annotated[str, Meta(max_length=64)] | None = None
    build_command: CommandLine | None = None
    run_command: CommandLine | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    health_check_path: Annotated[str, Meta(max_length=512, pattern=r"^/")] | None = None
    replicas: Annotated[int, Meta(ge=1, le=20)] | None = None
    resources: Config | None = None
    dependencies: Annotated[list[Id], Meta(max_length=50)] | None = None
    owner: Annotated[str, Meta(max_length=200)] | None = None


class DeleteService(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id


class ControlService(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id
    action: Literal["start", "stop", "restart"]
    environment_id: Id | None = None


class ControlInstance(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id
    environment_id: Id
    instance_id: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
    action: Literal["start", "stop", "restart", "remove"]


class PipelineStepBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
    command: CommandLine


class CreatePipeline(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id
    name: Name
    steps: Annotated[list[PipelineStepBody], Meta(min_length=1, max_length=20)]


class UpdatePipeline(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pipeline_id: Id
    name: Name | None = None
    # Replaces every step.
    steps: Annotated[list[PipelineStepBody], Meta(min_length=1, max_length=20)] | None = None


class DeletePipeline(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pipeline_id: Id


ParameterValue = str | int | float | bool


class RunPipeline(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pipeline_id: Id
    environment_id: Id
    branch: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    parameters: Annotated[
        dict[Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], ParameterValue],
        Meta(max_length=50),
    ] = {}


class SetEnvVar(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id
    key: Annotated[str, Meta(min_length=1, max_length=128)]
    value: Annotated[str, Meta(max_length=32768)]
    secret: bool = False


class RemoveEnvVar(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id
    key: Annotated[str, Meta(min_length=1, max_length=128)]


class CreateDeployment(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: Id
    environment_id: Id
    ref: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    strategy: Strategy = "blue-green"
    notify_channels: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=10)] = []
    config: Config = {}


class Rollback(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The deployment to roll back (its service and environment); to the previous
    # good one unless `to_deployment_id` names which.
    deployment_id: Id
    to_deployment_id: Id | None = None


class CancelDeployment(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    deployment_id: Id


class ReportStep(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    deployment_id: Id
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    state: Literal["pending", "running", "success", "failure"]
    message: Annotated[str, Meta(max_length=4000)] = ""
    error_message: Annotated[str, Meta(max_length=4000)] = ""


class FinishDeployment(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    deployment_id: Id
    status: Literal["success", "failure"] = "success"
    message: Annotated[str, Meta(max_length=4000)] = ""


class Created(msgspec.Struct, frozen=True, kw_only=True):
    id: str


# The agent's side: it holds NATS access, not a user's credential.


class AgentStart(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    deployment_id: Id
    agent_id: Annotated[str, Meta(min_length=1, max_length=128)]


class AgentFinish(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    deployment_id: Id
    succeeded: bool
    reason: Annotated[str, Meta(max_length=4000)] = ""
    step: str | None = None
    commit_hash: str | None = None
    release_id: str | None = None
    address: str | None = None


class ServiceEnv(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An agent restarting the instances of a service asks for its env vars again."""

    service_id: Id


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an agent needs to run a deployment; sent in a reply, never stored
    (it carries secret env var values in clear)."""

    deployment_id: str
    organization_id: str
    service_id: str
    environment_id: str
    repository_url: str
    ref: str
    strategy: str
    build_command: list[str]
    run_command: list[str]
    port: int | None
    health_check_path: str
    replicas: int
    env: dict[str, str]
    # Set on a rollback: the release to start again instead of building one.
    reuse_release_id: str | None = None
    # For the deployment's own scripts to report steps with (fastDeploy).
    deployment_token: str | None = None
    # A pipeline run: its steps, run after the build, and its parameters.
    pipeline_steps: list[PipelineStepSpec] = []
    parameters: dict[str, str] = {}
    # The release's deployforge.yml env (defaults, never secrets), set by the agent.
    manifest_env: dict[str, str] = {}
    # The fields the release's deployforge.yml set (its run_command wins over the service's).
    manifest_fields: list[str] = []
