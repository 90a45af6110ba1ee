"""The API's schemas as TypedDicts (generated from /v1/openapi.json by
client/generate_models.py: do not edit; `make models` writes it again).

Answers are the JSON's dicts; these types name their keys for mypy and editors.
A key the document does not require is `NotRequired`."""

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "Accepted",
    "AcknowledgeBody",
    "Attempt",
    "AuditActor",
    "AuditEntry",
    "AuditResource",
    "Certificate",
    "CertificateBody",
    "ControlBody",
    "CreateOrganization",
    "CreateUser",
    "CriticalFinding",
    "Delivery",
    "Deployment",
    "DeploymentLogs",
    "Difference",
    "DnsRecord",
    "Domain",
    "DomainBody",
    "DomainPatch",
    "EnvVar",
    "EnvVarBody",
    "Environment",
    "EnvironmentBody",
    "EnvironmentHealth",
    "EnvironmentPatch",
    "Error",
    "Finding",
    "FinishBody",
    "FromEnvironment",
    "FromService",
    "GenerateBody",
    "HealthCheck",
    "IgnoreBody",
    "IgnoreRule",
    "IgnoreRuleBody",
    "InstanceAction",
    "InstanceCheck",
    "InstanceLogs",
    "InstanceReport",
    "IssuedToken",
    "LogLine",
    "Login",
    "LogoutBody",
    "Member",
    "Membership",
    "NewMember",
    "NewToken",
    "NewWebhook",
    "Organization",
    "PageAuditEntry",
    "PageDelivery",
    "PageDeployment",
    "PageDomain",
    "PageEnvironment",
    "PageFinding",
    "PageIgnoreRule",
    "PageInstanceReport",
    "PageMember",
    "PageOrganization",
    "PagePipeline",
    "PageProject",
    "PageProxyRoute",
    "PageResource",
    "PageScan",
    "PageService",
    "PageToken",
    "PageUser",
    "PageWebhook",
    "PasswordGrant",
    "Pipeline",
    "PipelineBody",
    "PipelinePatch",
    "PipelineStepBody",
    "Project",
    "ProjectBody",
    "ProjectPatch",
    "ProxyRoute",
    "ProxyRouteBody",
    "Readiness",
    "Refresh",
    "ReplayBody",
    "Resource",
    "ResourceBody",
    "ResourcePatch",
    "RoleChange",
    "RollbackBody",
    "RotateBody",
    "RotatedSecret",
    "RunBody",
    "Scan",
    "ScanDetail",
    "Schedule",
    "ScheduleBody",
    "Service",
    "ServiceBody",
    "ServiceDomainBody",
    "ServiceHealth",
    "ServiceLogs",
    "ServicePatch",
    "ServiceTokenBody",
    "Step",
    "StepReport",
    "Token",
    "TokenPair",
    "User",
    "Verification",
    "Webhook",
    "WebhookBody",
    "WebhookPatch",
]


class Accepted(TypedDict):
    """Accepted"""

    id: str
    status: NotRequired[str]


class AcknowledgeBody(TypedDict):
    """AcknowledgeBody"""

    reason: NotRequired[str | None]


class Attempt(TypedDict):
    """Attempt"""

    attempt: int
    attempted_at: str
    succeeded: bool
    status_code: int | None
    latency_ms: float
    response_excerpt: str
    error: str | None
    next_attempt_at: str | None


class AuditActor(TypedDict):
    """AuditActor"""

    type: Literal["token", "user"]
    id: str
    name: str | None
    user_id: str
    user_name: str | None
    user_email: str | None


class AuditResource(TypedDict):
    """AuditResource"""

    type: str
    id: str


class AuditEntry(TypedDict):
    """AuditEntry"""

    id: str
    occurred_at: str
    actor: AuditActor
    event_type: str
    resource: AuditResource
    fields: list[str]
    request_id: str | None
    correlation_id: str | None
    causation_id: str | None


class Certificate(TypedDict):
    """Certificate"""

    domain_id: str
    full_domain: str
    status: str
    challenge: str
    issuer: str | None
    serial: str | None
    names: list[str]
    not_before: str | None
    not_after: str | None
    fingerprint_sha256: str | None
    renewal_due_at: str | None
    auto_renew: bool
    last_error: str | None
    attempts: int
    retry_at: str | None
    requested_at: str | None
    issued_at: str | None
    revoked_at: str | None


class CertificateBody(TypedDict):
    """CertificateBody"""

    force_renewal: NotRequired[bool]


class ControlBody(TypedDict):
    """ControlBody"""

    environment_id: NotRequired[str | None]


class CreateOrganization(TypedDict):
    """CreateOrganization"""

    name: str
    slug: NotRequired[str | None]


class CreateUser(TypedDict):
    """CreateUser"""

    email: str
    password: str
    name: str
    organization_id: NotRequired[str | None]
    role: NotRequired[Literal["admin", "deployer", "owner", "viewer"]]


class CriticalFinding(TypedDict):
    """The seed's shape of a critical finding."""

    resource_id: str
    expected_config: Any
    actual_config: Any


class Delivery(TypedDict):
    """Delivery"""

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str
    attempts: list[Attempt]
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    correlation_id: str | None
    created_at: str
    updated_at: str


class Deployment(TypedDict):
    """Deployment"""

    id: str
    organization_id: str
    project_id: str
    service_id: str
    environment_id: str
    ref: str
    strategy: str
    status: str
    queue_position: int | None
    current_step: str | None
    progress: int
    estimated_completion: str | None
    notify_channels: list[str]
    config: dict[str, Any]
    commit_hash: str | None
    release_id: str | None
    address: str | None
    failure_reason: str | None
    rollback_of: str | None
    rolled_back_by: str | None
    pipeline_id: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    logs_url: str


class LogLine(TypedDict):
    """LogLine"""

    ts: str
    line: str
    step: NotRequired[str | None]
    environment_id: NotRequired[str]


class DeploymentLogs(TypedDict):
    """DeploymentLogs"""

    deployment_id: str
    lines: list[LogLine]


class Difference(TypedDict):
    """Difference"""

    pointer: str
    expected: NotRequired[Any]
    actual: NotRequired[Any]


class DnsRecord(TypedDict):
    """DnsRecord"""

    type: str
    name: str
    value: str
    purpose: str


class Domain(TypedDict):
    """Domain"""

    id: str
    organization_id: str
    domain: str
    subdomain: str | None
    full_domain: str
    service_id: str
    environment_id: str
    port: int | None
    ssl_enabled: bool
    auto_renew_ssl: bool
    redirect_to: str | None
    redirect_https: bool
    challenge: str
    verification_status: str
    verification_error: str | None
    dns_configured: bool
    addresses: list[str]
    ssl_status: str
    ssl_expires_at: str | None
    dns_records: list[DnsRecord]
    last_checked_at: str | None
    verified_at: str | None
    created_at: str
    updated_at: str


class DomainBody(TypedDict):
    """DomainBody"""

    domain: str
    subdomain: NotRequired[str | None]
    service_id: str
    environment_id: str
    port: NotRequired[int | None]
    ssl_enabled: NotRequired[bool]
    auto_renew_ssl: NotRequired[bool]
    redirect_to: NotRequired[str | None]
    redirect_https: NotRequired[bool]
    challenge: NotRequired[Literal["dns-01", "http-01"]]


class DomainPatch(TypedDict):
    """DomainPatch"""

    service_id: NotRequired[str | None]
    environment_id: NotRequired[str | None]
    port: NotRequired[int | None]
    ssl_enabled: NotRequired[bool | None]
    auto_renew_ssl: NotRequired[bool | None]
    redirect_to: NotRequired[str | None]
    redirect_https: NotRequired[bool | None]


class EnvVar(TypedDict):
    """EnvVar"""

    key: str
    secret: bool
    value: str | None
    updated_at: str


class EnvVarBody(TypedDict):
    """EnvVarBody"""

    value: str
    secret: NotRequired[bool]


class Environment(TypedDict):
    """Environment"""

    id: str
    organization_id: str
    name: str
    provider: str
    type: str
    region: str | None
    cluster: str | None
    namespace: str | None
    configuration: dict[str, Any]
    resource_limits: dict[str, Any]
    auto_deploy: bool
    status: str
    has_credentials: bool
    created_at: str
    updated_at: str


class EnvironmentBody(TypedDict):
    """EnvironmentBody"""

    name: str
    provider: NotRequired[Literal["aws", "azure", "gcp", "local"]]
    type: NotRequired[Literal["development", "preview", "production", "staging"]]
    region: NotRequired[str | None]
    cluster: NotRequired[str | None]
    namespace: NotRequired[str | None]
    configuration: NotRequired[dict[str, Any]]
    resource_limits: NotRequired[dict[str, Any]]
    auto_deploy: NotRequired[bool]
    credentials: NotRequired[dict[str, Any] | None]


class InstanceCheck(TypedDict):
    """One instance's last health probe (its agent probes every few seconds)."""

    instance_id: str
    status: str
    ok: bool | None
    status_code: int | None
    latency_ms: float | None
    error: str | None
    checked_at: str | None


class EnvironmentHealth(TypedDict):
    """EnvironmentHealth"""

    environment_id: str
    status: str
    score: int
    running: int
    desired: int
    restarts: int
    reported_at: str | None
    checks: NotRequired[list[InstanceCheck]]


class EnvironmentPatch(TypedDict):
    """EnvironmentPatch"""

    name: NotRequired[str | None]
    region: NotRequired[str | None]
    cluster: NotRequired[str | None]
    namespace: NotRequired[str | None]
    configuration: NotRequired[dict[str, Any] | None]
    resource_limits: NotRequired[dict[str, Any] | None]
    auto_deploy: NotRequired[bool | None]
    status: NotRequired[str | None]
    credentials: NotRequired[dict[str, Any] | None]


class Error(TypedDict):
    """Error"""

    error: dict[str, Any]


class Finding(TypedDict):
    """Finding"""

    id: str
    environment_id: str
    resource_type: str
    resource_id: str | None
    address: str
    kind: str
    severity: str
    differences: list[Difference]
    state: str
    first_seen: str
    last_seen: str
    last_scan_id: str
    resolved_at: str | None
    state_by: NotRequired[str | None]
    state_reason: NotRequired[str | None]
    state_at: NotRequired[str | None]
    ignored_until: NotRequired[str | None]
    last_action: NotRequired[str | None]
    last_action_by: NotRequired[str | None]
    last_action_at: NotRequired[str | None]
    remediation_deployment_id: NotRequired[str | None]


class FinishBody(TypedDict):
    """FinishBody"""

    status: NotRequired[Literal["failure", "success"]]
    message: NotRequired[str]


class FromEnvironment(TypedDict):
    """FromEnvironment"""

    service_id: str
    ref: NotRequired[str | None]
    strategy: NotRequired[Literal["blue-green", "recreate", "rolling"]]
    notify_channels: NotRequired[list[str]]
    config: NotRequired[dict[str, Any]]


class FromService(TypedDict):
    """FromService"""

    environment_id: str
    ref: NotRequired[str | None]
    strategy: NotRequired[Literal["blue-green", "recreate", "rolling"]]
    notify_channels: NotRequired[list[str]]
    config: NotRequired[dict[str, Any]]


class GenerateBody(TypedDict):
    """DevFlow's `ssl/generate`: the provider is the configured ACME CA."""

    provider: NotRequired[Literal["acme", "letsencrypt"]]
    force_renewal: NotRequired[bool]


class HealthCheck(TypedDict):
    """The last probe of an instance's health-check path, made by its agent."""

    ok: bool
    status_code: int | None
    latency_ms: float
    checked_at: str
    error: NotRequired[str | None]


class IgnoreBody(TypedDict):
    """IgnoreBody"""

    reason: str
    until: NotRequired[str | None]


class IgnoreRule(TypedDict):
    """IgnoreRule"""

    id: str
    environment_id: str
    resource_type: str
    resource: str
    pointer: str
    reason: str
    expires_at: str | None
    created_by: str
    created_at: str


class IgnoreRuleBody(TypedDict):
    """IgnoreRuleBody"""

    resource_type: NotRequired[str]
    resource: NotRequired[str]
    pointer: NotRequired[str]
    reason: str
    expires_at: NotRequired[str | None]


class InstanceAction(TypedDict):
    """InstanceAction"""

    instance_id: str
    service_id: str
    environment_id: str
    action: str


class InstanceLogs(TypedDict):
    """InstanceLogs"""

    instance_id: str
    service_id: str
    lines: list[LogLine]


class InstanceReport(TypedDict):
    """InstanceReport"""

    instance_id: str
    service_id: str
    environment_id: str
    release_id: str
    agent_id: str
    pid: int
    port: int
    address: str
    status: str
    started_at: str
    uptime_seconds: float
    restarts: int
    cpu_percent: float
    memory_rss: int
    observed_at: str
    check: NotRequired[HealthCheck | None]


class IssuedToken(TypedDict):
    """IssuedToken"""

    id: str
    name: str
    token: str
    kind: str
    prefix: str
    scopes: list[str]
    organization_id: str | None
    expires_at: str | None
    created_at: str


class Login(TypedDict):
    """Login"""

    email: str
    password: str
    organization_id: NotRequired[str | None]


class LogoutBody(TypedDict):
    """LogoutBody"""

    refresh_token: NotRequired[str | None]


class Member(TypedDict):
    """Member"""

    user_id: str
    email: str
    name: str
    role: str
    joined_at: str


class Membership(TypedDict):
    """Membership"""

    organization_id: str
    name: str
    slug: str
    role: str
    joined_at: str


class NewMember(TypedDict):
    """NewMember"""

    user_id: str
    role: Literal["admin", "deployer", "owner", "viewer"]


class NewToken(TypedDict):
    """NewToken"""

    name: str
    scopes: list[Literal["admin", "deploy", "read", "write"]]
    expires_in_days: NotRequired[int | None]
    organization_id: NotRequired[str | None]


class NewWebhook(TypedDict):
    """NewWebhook"""

    id: str
    organization_id: str
    url: str
    events: list[str]
    description: str
    active: bool
    rate_limit: int | None
    disabled_reason: str | None
    failing_since: str | None
    secret_rotated_at: str | None
    previous_secret_expires_at: str | None
    created_at: str
    updated_at: str
    secret: str


class Organization(TypedDict):
    """Organization"""

    id: str
    name: str
    slug: str
    created_at: str
    role: NotRequired[str | None]


class PageAuditEntry(TypedDict):
    """Page[AuditEntry]"""

    items: list[AuditEntry]
    next_cursor: NotRequired[str | None]


class PageDelivery(TypedDict):
    """Page[Delivery]"""

    items: list[Delivery]
    next_cursor: NotRequired[str | None]


class PageDeployment(TypedDict):
    """Page[Deployment]"""

    items: list[Deployment]
    next_cursor: NotRequired[str | None]


class PageDomain(TypedDict):
    """Page[Domain]"""

    items: list[Domain]
    next_cursor: NotRequired[str | None]


class PageEnvironment(TypedDict):
    """Page[Environment]"""

    items: list[Environment]
    next_cursor: NotRequired[str | None]


class PageFinding(TypedDict):
    """Page[Finding]"""

    items: list[Finding]
    next_cursor: NotRequired[str | None]


class PageIgnoreRule(TypedDict):
    """Page[IgnoreRule]"""

    items: list[IgnoreRule]
    next_cursor: NotRequired[str | None]


class PageInstanceReport(TypedDict):
    """Page[InstanceReport]"""

    items: list[InstanceReport]
    next_cursor: NotRequired[str | None]


class PageMember(TypedDict):
    """Page[Member]"""

    items: list[Member]
    next_cursor: NotRequired[str | None]


class PageOrganization(TypedDict):
    """Page[Organization]"""

    items: list[Organization]
    next_cursor: NotRequired[str | None]


class Pipeline(TypedDict):
    """Pipeline"""

    id: str
    organization_id: str
    service_id: str
    name: str
    steps: list[dict[str, Any]]
    created_at: str
    updated_at: str


class PagePipeline(TypedDict):
    """Page[Pipeline]"""

    items: list[Pipeline]
    next_cursor: NotRequired[str | None]


class Project(TypedDict):
    """Project"""

    id: str
    organization_id: str
    name: str
    slug: str
    description: str
    created_at: str
    updated_at: str


class PageProject(TypedDict):
    """Page[Project]"""

    items: list[Project]
    next_cursor: NotRequired[str | None]


class ProxyRoute(TypedDict):
    """ProxyRoute"""

    id: str
    domain: str
    service_id: str
    environment_id: str
    port: int | None
    verification_status: str
    created_at: str


class PageProxyRoute(TypedDict):
    """Page[ProxyRoute]"""

    items: list[ProxyRoute]
    next_cursor: NotRequired[str | None]


class Resource(TypedDict):
    """Resource"""

    id: str
    organization_id: str
    environment_id: str
    type: str
    provider: str
    region: str
    specs: dict[str, Any]
    tags: dict[str, str]
    status: str
    provider_id: str | None
    attributes: dict[str, Any]
    last_operation: str | None
    last_error: str | None
    created_at: str
    updated_at: str


class PageResource(TypedDict):
    """Page[Resource]"""

    items: list[Resource]
    next_cursor: NotRequired[str | None]


class Scan(TypedDict):
    """Scan"""

    id: str
    scan_id: str
    environment_id: str
    initiated_by: str | None
    scheduled: bool
    remediate: bool
    status: str
    drifts_detected: int | None
    critical: int | None
    new: int | None
    reopened: int | None
    changed: int | None
    resolved: int | None
    resources: int | None
    services: int | None
    could_not_read: list[str]
    reason: str | None
    started_at: str
    finished_at: str | None


class PageScan(TypedDict):
    """Page[Scan]"""

    items: list[Scan]
    next_cursor: NotRequired[str | None]


class Service(TypedDict):
    """Service"""

    id: str
    organization_id: str
    project_id: str
    name: str
    repository_url: str
    branch: str
    runtime: str | None
    build_command: list[str]
    run_command: list[str]
    port: int | None
    health_check_path: str
    replicas: int
    resources: dict[str, Any]
    dependencies: list[str]
    owner: str | None
    created_at: str
    updated_at: str


class PageService(TypedDict):
    """Page[Service]"""

    items: list[Service]
    next_cursor: NotRequired[str | None]


class Token(TypedDict):
    """Token"""

    id: str
    name: str
    kind: str
    prefix: str
    scopes: list[str]
    organization_id: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    service_id: NotRequired[str | None]
    deployment_id: NotRequired[str | None]


class PageToken(TypedDict):
    """Page[Token]"""

    items: list[Token]
    next_cursor: NotRequired[str | None]


class User(TypedDict):
    """User"""

    id: str
    email: str
    name: str
    is_superuser: bool
    active: bool
    default_organization_id: str | None
    created_at: str
    organizations: NotRequired[list[Membership]]


class PageUser(TypedDict):
    """Page[User]"""

    items: list[User]
    next_cursor: NotRequired[str | None]


class Webhook(TypedDict):
    """Webhook"""

    id: str
    organization_id: str
    url: str
    events: list[str]
    description: str
    active: bool
    rate_limit: int | None
    disabled_reason: str | None
    failing_since: str | None
    secret_rotated_at: str | None
    previous_secret_expires_at: str | None
    created_at: str
    updated_at: str


class PageWebhook(TypedDict):
    """Page[Webhook]"""

    items: list[Webhook]
    next_cursor: NotRequired[str | None]


class PasswordGrant(TypedDict):
    """OAuth2 password grant (RFC 6749 §4.3), as fastDeploy clients send it."""

    username: str
    password: str
    grant_type: NotRequired[str | None]
    scope: NotRequired[str | None]
    client_id: NotRequired[str | None]
    client_secret: NotRequired[str | None]


class PipelineStepBody(TypedDict):
    """PipelineStepBody"""

    name: str
    command: str | list[str]


class PipelineBody(TypedDict):
    """PipelineBody"""

    name: str
    steps: list[PipelineStepBody]


class PipelinePatch(TypedDict):
    """PipelinePatch"""

    name: NotRequired[str | None]
    steps: NotRequired[list[PipelineStepBody] | None]


class ProjectBody(TypedDict):
    """ProjectBody"""

    name: str
    slug: NotRequired[str | None]
    description: NotRequired[str]


class ProjectPatch(TypedDict):
    """ProjectPatch"""

    name: NotRequired[str | None]
    description: NotRequired[str | None]


class ProxyRouteBody(TypedDict):
    """ProxyRouteBody"""

    domain: str
    service_id: str
    environment_id: str
    port: NotRequired[int | None]


class Readiness(TypedDict):
    """Readiness"""

    status: str
    checks: dict[str, str]


class Refresh(TypedDict):
    """Refresh"""

    refresh_token: str


class ReplayBody(TypedDict):
    """ReplayBody"""

    since: str


class ResourceBody(TypedDict):
    """ResourceBody"""

    environment_id: str
    type: Literal["bucket", "security_group", "server", "volume"]
    provider: NotRequired[str]
    region: NotRequired[str | None]
    specs: dict[str, Any]
    tags: NotRequired[dict[str, str]]


class ResourcePatch(TypedDict):
    """ResourcePatch"""

    specs: NotRequired[dict[str, Any] | None]
    tags: NotRequired[dict[str, str] | None]


class RoleChange(TypedDict):
    """RoleChange"""

    role: Literal["admin", "deployer", "owner", "viewer"]


class RollbackBody(TypedDict):
    """RollbackBody"""

    to_deployment_id: NotRequired[str | None]


class RotateBody(TypedDict):
    """RotateBody"""

    secret: NotRequired[str | None]


class RotatedSecret(TypedDict):
    """RotatedSecret"""

    id: str
    secret: str
    previous_expires_at: str


class RunBody(TypedDict):
    """RunBody"""

    environment_id: NotRequired[str | None]
    environment: NotRequired[str | None]
    branch: NotRequired[str | None]
    parameters: NotRequired[dict[str, str | int | float | bool]]


class ScanDetail(TypedDict):
    """ScanDetail"""

    id: str
    scan_id: str
    environment_id: str
    initiated_by: str | None
    scheduled: bool
    remediate: bool
    status: str
    drifts_detected: int | None
    critical: int | None
    new: int | None
    reopened: int | None
    changed: int | None
    resolved: int | None
    resources: int | None
    services: int | None
    could_not_read: list[str]
    reason: str | None
    started_at: str
    finished_at: str | None
    findings: list[Finding]
    critical_findings: list[CriticalFinding]


class Schedule(TypedDict):
    """Schedule"""

    environment_id: str
    interval_seconds: int | None
    cron: str | None
    mode: str
    set_by: str
    since: str
    last_due: str | None
    last_scan_id: str | None


class ScheduleBody(TypedDict):
    """ScheduleBody"""

    interval_seconds: NotRequired[int | None]
    cron: NotRequired[str | None]
    mode: NotRequired[Literal["detect", "remediate"]]


class ServiceBody(TypedDict):
    """ServiceBody"""

    project_id: str
    name: str
    repository_url: str
    branch: NotRequired[str]
    runtime: NotRequired[str | None]
    build_command: NotRequired[str | list[str] | None]
    run_command: str | list[str]
    port: NotRequired[int | None]
    health_check_path: NotRequired[str]
    replicas: NotRequired[int]
    resources: NotRequired[dict[str, Any]]
    dependencies: NotRequired[list[str]]
    owner: NotRequired[str | None]


class ServiceDomainBody(TypedDict):
    """DevFlow's project domain: the service is in the path."""

    domain: str
    subdomain: NotRequired[str | None]
    environment_id: str
    port: NotRequired[int | None]
    ssl_enabled: NotRequired[bool]
    auto_renew_ssl: NotRequired[bool]
    redirect_to: NotRequired[str | None]
    redirect_https: NotRequired[bool]
    challenge: NotRequired[Literal["dns-01", "http-01"]]


class ServiceHealth(TypedDict):
    """ServiceHealth"""

    service_id: str
    status: str
    score: int
    environments: list[EnvironmentHealth]


class ServiceLogs(TypedDict):
    """ServiceLogs"""

    service_id: str
    lines: list[LogLine]


class ServicePatch(TypedDict):
    """ServicePatch"""

    name: NotRequired[str | None]
    repository_url: NotRequired[str | None]
    branch: NotRequired[str | None]
    runtime: NotRequired[str | None]
    build_command: NotRequired[str | list[str] | None]
    run_command: NotRequired[str | list[str] | None]
    port: NotRequired[int | None]
    health_check_path: NotRequired[str | None]
    replicas: NotRequired[int | None]
    resources: NotRequired[dict[str, Any] | None]
    dependencies: NotRequired[list[str] | None]
    owner: NotRequired[str | None]


class ServiceTokenBody(TypedDict):
    """ServiceTokenBody"""

    name: str
    expires_in_days: NotRequired[int]
    scopes: NotRequired[list[Literal["deploy", "read"]]]


class Step(TypedDict):
    """Step"""

    name: str
    state: str
    message: str
    error_message: str
    started_at: str
    finished_at: str | None
    duration_seconds: float | None


class StepReport(TypedDict):
    """StepReport"""

    name: str
    state: Literal["failure", "pending", "running", "success"]
    message: NotRequired[str]
    error_message: NotRequired[str]


class TokenPair(TypedDict):
    """TokenPair"""

    access_token: str
    refresh_token: str
    token_type: NotRequired[str]
    expires_in: int


class Verification(TypedDict):
    """Verification"""

    valid: bool
    user_id: str
    organization_id: str | None
    token_type: str
    scopes: list[str]
    session_id: NotRequired[str | None]
    token_id: NotRequired[str | None]


class WebhookBody(TypedDict):
    """WebhookBody"""

    url: str
    events: list[str]
    description: NotRequired[str]
    active: NotRequired[bool]
    secret: NotRequired[str | None]
    rate_limit: NotRequired[int | None]


class WebhookPatch(TypedDict):
    """WebhookPatch"""

    url: NotRequired[str | None]
    events: NotRequired[list[str] | None]
    description: NotRequired[str | None]
    active: NotRequired[bool | None]
    rate_limit: NotRequired[int | None]
