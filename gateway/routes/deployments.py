"""Deployments: start, follow, cancel, roll back; fastDeploy's step reports and finish."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import answer_created, caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routes.environments import fetch_environment
from gateway.routes.services import get_visible_service
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import request_org, require_visible
from libs.errors import NotFound
from libs.principal import Principal
from services.deploy import commands as c

api = Api("deployments")

# Progress is how many of an agent's six steps (fetch, build, start, health_check,
# switch, cleanup) are done; 100 only once the deployment succeeded.


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
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
    estimated_completion: datetime | None
    notify_channels: list[str]
    config: dict[str, Any]
    commit_hash: str | None
    release_id: str | None
    # The stable address serving the service in its environment.
    address: str | None
    failure_reason: str | None
    rollback_of: str | None
    rolled_back_by: str | None
    # Set on a pipeline run: the pipeline whose steps it runs.
    pipeline_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    logs_url: str


class Step(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    state: str
    message: str
    error_message: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None


class FromService(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: c.Id
    ref: str | None = None
    strategy: c.Strategy = "blue-green"
    notify_channels: list[str] = []
    config: c.Config = {}


class FromEnvironment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: c.Id
    ref: str | None = None
    strategy: c.Strategy = "blue-green"
    notify_channels: list[str] = []
    config: c.Config = {}


class RollbackBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    to_deployment_id: c.Id | None = None


# The same shapes as the commands (so the document names the states it accepts).
class StepReport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    state: Literal["pending", "running", "success", "failure"]
    message: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    error_message: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class FinishBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Literal["success", "failure"] = "success"
    message: Annotated[str, msgspec.Meta(max_length=4000)] = ""


_SELECT = (
    "SELECT d.id, d.organization_id, d.project_id, d.service_id, d.environment_id, d.ref,"
    " d.strategy, d.status, d.queue_position, d.current_step,"
    " CASE WHEN d.status IN ('succeeded', 'rolled_back') THEN 100"
    "  WHEN d.status IN ('initializing', 'running')"
    "  THEN least(99, d.steps_done * 100 / 6) ELSE 0 END AS progress,"
    " CASE WHEN d.status IN ('initializing', 'running') THEN d.started_at + make_interval("
    "  secs => (SELECT avg(p.duration_seconds) FROM (SELECT duration_seconds FROM"
    "   deploy.deployments h WHERE h.service_id = d.service_id AND h.status = 'succeeded'"
    "   ORDER BY h.finished_at DESC LIMIT 10) p)) END AS estimated_completion,"
    " d.notify_channels, d.config, d.commit_hash, d.release_id, d.address, d.failure_reason,"
    " d.rollback_of, d.rolled_back_by, d.pipeline_id, d.created_at, d.started_at, d.finished_at,"
    " d.duration_seconds, '/v1/deployments/' || d.id || '/logs' AS logs_url"
    " FROM deploy.deployments d"
)


async def fetch_deployment(pool: asyncpg.Pool, deployment_id: str) -> Deployment | None:
    row = await pool.fetchrow(f"{_SELECT} WHERE d.id = $1", deployment_id)
    return Deployment(**dict(row)) if row else None


def _may_see(principal: Principal, deployment: Deployment) -> bool:
    if principal.deployment_id is not None and principal.deployment_id != deployment.id:
        return False
    return principal.service_id is None or principal.service_id == deployment.service_id


async def get_visible_deployment(request: web.Request, deployment_id: str) -> Deployment:
    principal = principal_of(request)
    deployment = await fetch_deployment(request.app[keys.POOL], deployment_id)
    require_visible(
        principal,
        deployment.organization_id if deployment else None,
        "deployment",
        deployment_token_ok=True,
    )
    assert deployment is not None
    if not _may_see(principal, deployment):
        raise NotFound("deployment not found")
    return deployment


async def _start(request: web.Request, command: c.CreateDeployment) -> web.Response:
    return await answer_created(
        request,
        "deploy",
        "create_deployment",
        command,
        fetch=lambda new_id: fetch_deployment(request.app[keys.POOL], new_id),
        location="/v1/deployments",
    )


@api.post(
    "/v1/services/{id}/deployments",
    summary="Deploy a service to an environment",
    scope="deploy",
    body=FromService,
    response=Deployment,
    status=201,
)
async def deploy_service(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    body = await read_json(request, FromService)
    command = convert(
        {"service_id": service.id, **msgspec.structs.asdict(body)}, c.CreateDeployment
    )
    return await _start(request, command)


@api.post(
    "/v1/environments/{id}/deployments",
    summary="Deploy a service to this environment",
    scope="deploy",
    body=FromEnvironment,
    response=Deployment,
    status=201,
)
async def deploy_to_environment(request: web.Request) -> web.Response:
    env = await fetch_environment(request.app[keys.POOL], request.match_info["id"])
    require_visible(principal_of(request), env.organization_id if env else None, "environment")
    assert env is not None
    body = await read_json(request, FromEnvironment)
    command = convert(
        {"environment_id": env.id, **msgspec.structs.asdict(body)}, c.CreateDeployment
    )
    return await _start(request, command)


_LIST = (
    f"{_SELECT} WHERE d.organization_id = $1"
    " AND ($2::text IS NULL OR d.status = $2) AND ($3::text IS NULL OR d.service_id = $3)"
    " AND ($4::text IS NULL OR d.environment_id = $4)"
    " AND ($5::timestamptz IS NULL OR d.created_at >= $5)"
    " AND ($6::timestamptz IS NULL OR d.created_at < $6)"
    " AND ($7::text IS NULL OR d.pipeline_id = $7)"
    " AND ($8::timestamptz IS NULL OR (d.created_at, d.id) < ($8, $9))"
    " ORDER BY d.created_at DESC, d.id DESC LIMIT $10"
)


class DeploymentFilters(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    service_id: str | None = None
    environment_id: str | None = None
    pipeline_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


async def history(
    request: web.Request,
    org: str,
    *,
    service_id: str | None = None,
    pipeline_id: str | None = None,
) -> web.Response:
    """A page of the organization's deployments, newest first, filtered by the query
    (and by `service_id` or `pipeline_id` when the path names one)."""
    query = {k: v for k, v in request.query.items() if k in DeploymentFilters.__struct_fields__}
    filters = convert(query, DeploymentFilters)
    # A service token sees its own service's deployments only.
    service_id = principal_of(request).service_id or service_id
    page = await fetch_page(
        request,
        _LIST,
        org,
        filters.status,
        service_id or filters.service_id,
        filters.environment_id,
        filters.created_after,
        filters.created_before,
        pipeline_id or filters.pipeline_id,
        build=lambda r: Deployment(**dict(r)),
    )
    return json_response(page)


@api.get(
    "/v1/organizations/{org_id}/deployments",
    summary="Deployment history, newest first",
    response=Page[Deployment],
    query=DeploymentFilters,
)
@api.get(
    "/v1/deployments",
    summary="Deployment history (default organization)",
    response=Page[Deployment],
    query=DeploymentFilters,
)
async def list_deployments(request: web.Request) -> web.Response:
    return await history(request, request_org(request, principal_of(request)))


@api.get(
    "/v1/services/{id}/deployments",
    summary="A service's deployment history",
    response=Page[Deployment],
    query=DeploymentFilters,
)
async def service_history(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    return await history(request, service.organization_id, service_id=service.id)


@api.get(
    "/v1/deployments/{id}",
    summary="One deployment: state, progress, queue position",
    response=Deployment,
)
async def get_deployment(request: web.Request) -> web.Response:
    return json_response(await get_visible_deployment(request, request.match_info["id"]))


@api.get("/v1/deployments/{id}/steps", summary="A deployment's steps", response=list[Step])
async def list_steps(request: web.Request) -> web.Response:
    deployment = await get_visible_deployment(request, request.match_info["id"])
    rows = await request.app[keys.POOL].fetch(
        "SELECT name, state, message, error_message, started_at, finished_at, duration_seconds"
        " FROM deploy.deployment_steps WHERE deployment_id = $1 ORDER BY seq",
        deployment.id,
    )
    return json_response([Step(**dict(r)) for r in rows])


@api.post(
    "/v1/deployments/{id}/cancel",
    summary="Cancel a deployment",
    scope="deploy",
    response=Deployment,
)
async def cancel(request: web.Request) -> web.Response:
    deployment = await get_visible_deployment(request, request.match_info["id"])
    result = await send(
        request, "deploy", "cancel_deployment", c.CancelDeployment(deployment_id=deployment.id)
    )
    await caught_up(request, result)
    return json_response(await fetch_deployment(request.app[keys.POOL], deployment.id))


@api.post(
    "/v1/deployments/{id}/rollback",
    summary="Roll back to the previous good (or a named) deployment's release",
    scope="deploy",
    body=RollbackBody,
    response=Deployment,
    status=201,
)
async def rollback(request: web.Request) -> web.Response:
    deployment = await get_visible_deployment(request, request.match_info["id"])
    body = RollbackBody()
    if request.can_read_body:
        body = await read_json(request, RollbackBody)
    result = await send(
        request,
        "deploy",
        "rollback",
        c.Rollback(deployment_id=deployment.id, to_deployment_id=body.to_deployment_id),
    )
    created = msgspec.json.decode(result.data, type=c.Created)
    await caught_up(request, result)
    return json_response(
        await fetch_deployment(request.app[keys.POOL], created.id) or {"id": created.id}, status=201
    )


@api.post(
    "/v1/deployments/{id}/steps",
    summary="Report a step (deployment token)",
    scope="deploy",
    body=StepReport,
    status=202,
)
async def report_step(request: web.Request) -> web.Response:
    deployment = await get_visible_deployment(request, request.match_info["id"])
    body = await read_json(request, StepReport)
    command = convert(
        {"deployment_id": deployment.id, **msgspec.structs.asdict(body)}, c.ReportStep
    )
    await send(request, "deploy", "report_step", command)
    return json_response({"accepted": True}, status=202)


@api.route(
    "PUT",
    "/v1/deployments/{id}/finish",
    summary="Finish a script-driven deployment (deployment token)",
    scope="deploy",
    body=FinishBody,
    response=Deployment,
)
async def finish(request: web.Request) -> web.Response:
    deployment = await get_visible_deployment(request, request.match_info["id"])
    body = FinishBody()
    if request.can_read_body:
        body = await read_json(request, FinishBody)
    command = convert(
        {"deployment_id": deployment.id, **msgspec.structs.asdict(body)}, c.FinishDeployment
    )
    result = await send(request, "deploy", "finish_deployment", command)
    await caught_up(request, result)
    return json_response(await fetch_deployment(request.app[keys.POOL], deployment.id))
