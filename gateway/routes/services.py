"""Services: what gets deployed, with its build and run commands and env vars."""

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
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import request_org, require_visible
from libs.errors import NotFound
from services.auth.commands import IssuedToken, IssueToken
from services.deploy import commands as c

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


class ServiceFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The query parameters of the list (documented; the route reads them itself)."""

    project_id: str | None = None


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


@api.get(
    "/v1/organizations/{org_id}/services",
    summary="List services",
    response=Page[Service],
    query=ServiceFilters,
)
@api.get(
    "/v1/services",
    summary="List services (default organization)",
    response=Page[Service],
    query=ServiceFilters,
)
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
