"""Services: what gets deployed, with its build and run commands and env vars."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import answer_created, caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import request_org, require_visible
from libs.errors import NotFound
from services.auth.commands import IssuedToken, IssueToken
from services.deploy import commands as c
from services.deploy import instance_state

api = Api("services")


class Service(msgspec.Struct, frozen=True, kw_only=True):
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
    created_at: datetime
    updated_at: datetime


class ServiceBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_id: c.Id
    name: c.Name
    repository_url: str
    branch: str = "main"
    runtime: str | None = None
    build_command: c.CommandLine | None = None
    run_command: c.CommandLine
    port: int | None = None
    health_check_path: str = "/"
    replicas: int = 1
    resources: c.Config = {}
    dependencies: list[str] = []
    owner: str | None = None


class ServicePatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: c.Name | None = None
    repository_url: str | None = None
    branch: str | None = None
    runtime: str | None = None
    build_command: c.CommandLine | None = None
    run_command: c.CommandLine | None = None
    port: int | None = None
    health_check_path: str | None = None
    replicas: int | None = None
    resources: c.Config | None = None
    dependencies: list[str] | None = None
    owner: str | None = None


class EnvVar(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    secret: bool
    # Secret values are never shown again.
    value: str | None
    updated_at: datetime


class EnvVarBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    value: str
    secret: bool = False


_COLUMNS = (
    "id, organization_id, project_id, name, repository_url, branch, runtime, build_command,"
    " run_command, port, health_check_path, replicas, resources, dependencies, owner,"
    " created_at, updated_at"
)


async def fetch_service(pool: asyncpg.Pool, service_id: str) -> Service | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM deploy.services WHERE id = $1 AND deleted_at IS NULL",  # noqa: S608
        service_id,
    )
    return Service(**dict(row)) if row else None


async def get_visible_service(request: web.Request, service_id: str) -> Service:
    principal = principal_of(request)
    service = await fetch_service(request.app[keys.POOL], service_id)
    require_visible(principal, service.organization_id if service else None, "service")
    assert service is not None
    if principal.service_id is not None and principal.service_id != service.id:
        raise NotFound("service not found")
    return service


@api.post(
    "/v1/organizations/{org_id}/services",
    summary="Create a service",
    scope="write",
    body=ServiceBody,
    response=Service,
    status=201,
)
@api.post(
    "/v1/services",
    summary="Create a service (its project's organization)",
    scope="write",
    body=ServiceBody,
    response=Service,
    status=201,
)
async def create_service(request: web.Request) -> web.Response:
    request_org(request, principal_of(request))
    body = await read_json(request, ServiceBody)
    command = convert(msgspec.structs.asdict(body), c.CreateService)
    return await answer_created(
        request,
        "deploy",
        "create_service",
        command,
        fetch=lambda new_id: fetch_service(request.app[keys.POOL], new_id),
        location="/v1/services",
    )


@api.get("/v1/organizations/{org_id}/services", summary="List services", response=Page[Service])
@api.get("/v1/services", summary="List services (default organization)", response=Page[Service])
async def list_services(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org = request_org(request, principal)
    page = await fetch_page(
        request,
        f"SELECT {_COLUMNS} FROM deploy.services WHERE organization_id = $1"  # noqa: S608
        " AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)"
        " AND ($3::text IS NULL OR id = $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5))"
        " ORDER BY created_at, id LIMIT $6",
        org,
        request.query.get("project_id"),
        # A service token sees its own service only.
        principal.service_id,
        build=lambda r: Service(**dict(r)),
    )
    return json_response(page)


@api.get("/v1/services/{id}", summary="One service", response=Service)
async def get_service(request: web.Request) -> web.Response:
    return json_response(await get_visible_service(request, request.match_info["id"]))


@api.patch(
    "/v1/services/{id}",
    summary="Change a service",
    scope="write",
    body=ServicePatch,
    response=Service,
)
async def update_service(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    body = await read_json(request, ServicePatch)
    fields = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
    command = convert({"service_id": service.id, **fields}, c.UpdateService)
    result = await send(request, "deploy", "update_service", command)
    await caught_up(request, result)
    return json_response(await fetch_service(request.app[keys.POOL], service.id))


@api.delete("/v1/services/{id}", summary="Delete a service", scope="admin", status=204)
async def delete_service(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    await send(request, "deploy", "delete_service", c.DeleteService(service_id=service.id))
    return web.Response(status=204)


@api.get(
    "/v1/services/{id}/env", summary="A service's environment variables", response=list[EnvVar]
)
async def list_env(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    rows = await request.app[keys.POOL].fetch(
        "SELECT key, secret, value, updated_at FROM deploy.env_vars WHERE service_id = $1"
        " ORDER BY key",
        service.id,
    )
    return json_response([EnvVar(**dict(r)) for r in rows])


@api.route(
    "PUT",
    "/v1/services/{id}/env/{key}",
    summary="Set one environment variable",
    scope="write",
    body=EnvVarBody,
    response=EnvVar,
)
async def set_env(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    body = await read_json(request, EnvVarBody)
    key = request.match_info["key"]
    command = convert(
        {"service_id": service.id, "key": key, "value": body.value, "secret": body.secret},
        c.SetEnvVar,
    )
    result = await send(request, "deploy", "set_env_var", command)
    await caught_up(request, result)
    row = await request.app[keys.POOL].fetchrow(
        "SELECT key, secret, value, updated_at FROM deploy.env_vars"
        " WHERE service_id = $1 AND key = $2",
        service.id,
        key,
    )
    return json_response(EnvVar(**dict(row)) if row else {"key": key, "secret": body.secret})


@api.delete(
    "/v1/services/{id}/env/{key}",
    summary="Remove one environment variable",
    scope="write",
    status=204,
)
async def remove_env(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    await send(
        request,
        "deploy",
        "remove_env_var",
        c.RemoveEnvVar(service_id=service.id, key=request.match_info["key"]),
    )
    return web.Response(status=204)


class ServiceTokenBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=180)] = 30
    scopes: Annotated[list[Literal["read", "deploy"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["read", "deploy"]
    )


@api.post(
    "/v1/services/{id}/tokens",
    summary="A service token (fastDeploy): deploys this service only, 1 to 180 days",
    scope="deploy",
    body=ServiceTokenBody,
    response=IssuedToken,
    status=201,
)
async def create_service_token(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    body = await read_json(request, ServiceTokenBody)
    command = IssueToken(
        name=body.name,
        scopes=list(body.scopes),
        kind="service",
        expires_in_days=body.expires_in_days,
        organization_id=service.organization_id,
        service_id=service.id,
    )
    result = await send(request, "auth", "issue_token", command)
    # The token must work the moment its owner receives it.
    await caught_up(request, result)
    return json_response(msgspec.json.decode(result.data, type=IssuedToken), status=201)


@api.get(
    "/v1/services/{id}/instances",
    summary="A service's running instances: pid, port, uptime, restarts, CPU, memory",
    response=list[instance_state.InstanceReport],
)
async def list_instances(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    reports = await instance_state.of_service(
        request.app[keys.INSTANCES],
        service.id,
    )
    wanted = request.query.get("environment_id")
    return json_response([r for r in reports if wanted in (None, r.environment_id)])


class ControlBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Only this environment; every environment the service runs in when left out.
    environment_id: c.Id | None = None


async def _control(
    request: web.Request, action: Literal["start", "stop", "restart"]
) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    body = ControlBody()
    if request.can_read_body:
        body = await read_json(request, ControlBody)
    await send(
        request,
        "deploy",
        "control_service",
        c.ControlService(service_id=service.id, action=action, environment_id=body.environment_id),
    )
    # Accepted: the agents running the service act on it; watch its instances.
    return json_response(
        {"service_id": service.id, "action": action, "environment_id": body.environment_id},
        status=202,
    )


@api.post(
    "/v1/services/{id}/start",
    summary="Start the service's stopped release",
    scope="deploy",
    body=ControlBody,
    status=202,
)
async def start_service(request: web.Request) -> web.Response:
    return await _control(request, "start")


@api.post(
    "/v1/services/{id}/stop",
    summary="Stop the running release (kept for start)",
    scope="deploy",
    body=ControlBody,
    status=202,
)
async def stop_service(request: web.Request) -> web.Response:
    return await _control(request, "stop")


@api.post(
    "/v1/services/{id}/restart",
    summary="Restart the running release (new instances first: no downtime)",
    scope="deploy",
    body=ControlBody,
    status=202,
)
async def restart_service(request: web.Request) -> web.Response:
    return await _control(request, "restart")


class InstanceCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One instance's last health probe (its agent probes every few seconds)."""

    instance_id: str
    status: str  # running | restarting | stopped
    ok: bool | None  # None: not probed
    status_code: int | None
    latency_ms: float | None
    error: str | None
    checked_at: datetime | None


class EnvironmentHealth(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str
    status: str  # healthy | degraded | down
    score: int  # 0-100
    # Running, freshly reported and passing their health check.
    running: int
    desired: int
    restarts: int
    reported_at: datetime | None
    checks: list[InstanceCheck] = []


class ServiceHealth(msgspec.Struct, frozen=True, kw_only=True):
    service_id: str
    status: str  # healthy | degraded | down | unknown (never deployed)
    score: int
    environments: list[EnvironmentHealth]


class HealthQuery(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


# A report older than this says nothing about now (agents report every 5 s).
STALE_SECONDS = 30.0


def health_of(
    environment_id: str,
    reports: list[instance_state.InstanceReport],
    desired: int,
    now: datetime,
) -> EnvironmentHealth:
    """Score: the share of desired instances running, freshly reported and passing
    their health check, less 5 points per restart (at most 30)."""
    fresh = [r for r in reports if (now - r.observed_at).total_seconds() < STALE_SECONDS]
    running = sum(1 for r in fresh if r.status == "running" and (r.check is None or r.check.ok))
    restarts = sum(r.restarts for r in reports)
    score = round(100 * min(running, desired) / desired) - min(30, 5 * restarts)
    score = max(0, score if running else 0)
    status = "down" if not running else "healthy" if score >= 90 else "degraded"
    return EnvironmentHealth(
        environment_id=environment_id,
        status=status,
        score=score,
        running=running,
        desired=desired,
        restarts=restarts,
        reported_at=max((r.observed_at for r in reports), default=None),
        checks=[
            InstanceCheck(
                instance_id=r.instance_id,
                status=r.status,
                ok=r.check.ok if r.check else None,
                status_code=r.check.status_code if r.check else None,
                latency_ms=r.check.latency_ms if r.check else None,
                error=r.check.error if r.check else None,
                checked_at=r.check.checked_at if r.check else None,
            )
            for r in sorted(reports, key=lambda r: r.instance_id)
        ],
    )


@api.get(
    "/v1/services/{id}/health",
    summary="A service's health per environment (?environment_id=), with a score and checks",
    response=ServiceHealth,
)
async def service_health(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    only = convert(
        {k: v for k, v in request.query.items() if k == "environment_id"}, HealthQuery
    ).environment_id
    reports = await instance_state.of_service(
        request.app[keys.INSTANCES],
        service.id,
    )
    deployed = await request.app[keys.POOL].fetch(
        "SELECT DISTINCT environment_id FROM deploy.deployments WHERE service_id = $1"
        " AND status IN ('succeeded', 'rolled_back')",
        service.id,
    )
    now = datetime.now(UTC)
    environments = [
        health_of(env, [r for r in reports if r.environment_id == env], service.replicas, now)
        for env in sorted(
            {r["environment_id"] for r in deployed} | {r.environment_id for r in reports}
        )
        if only is None or env == only
    ]
    if not environments:
        return json_response(
            ServiceHealth(service_id=service.id, status="unknown", score=0, environments=[])
        )
    score = min(e.score for e in environments)
    worst = min(environments, key=lambda e: e.score).status
    return json_response(
        ServiceHealth(service_id=service.id, status=worst, score=score, environments=environments)
    )
