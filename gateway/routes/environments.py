"""Environments: where services are deployed. Credentials are write-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import answer_created, caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, json_response, read_json
from gateway.scoping import request_org, require_visible
from libs.errors import ValidationFailed
from services.deploy import commands as c

api = Api("environments")


class Environment(msgspec.Struct, frozen=True, kw_only=True):
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
    created_at: datetime
    updated_at: datetime


class EnvironmentBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: c.Name
    provider: c.Provider = "local"
    type: c.EnvironmentType = "development"
    region: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    configuration: c.Config = {}
    resource_limits: c.Config = {}
    auto_deploy: bool = False
    credentials: c.Config | None = None


class EnvironmentPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: c.Name | None = None
    region: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    configuration: c.Config | None = None
    resource_limits: c.Config | None = None
    auto_deploy: bool | None = None
    status: str | None = None
    credentials: c.Config | None = None


_COLUMNS = (
    "id, organization_id, name, provider, type, region, cluster, namespace, configuration,"
    " resource_limits, auto_deploy, status, has_credentials, created_at, updated_at"
)


async def fetch_environment(pool: asyncpg.Pool, environment_id: str) -> Environment | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM deploy.environments WHERE id = $1 AND deleted_at IS NULL",  # noqa: S608
        environment_id,
    )
    return Environment(**dict(row)) if row else None


async def get_visible_environment(request: web.Request, environment_id: str) -> Environment:
    """The environment, or a 404 to whoever cannot see it."""
    principal = principal_of(request)
    env = await fetch_environment(request.app[keys.POOL], environment_id)
    require_visible(principal, env.organization_id if env else None, "environment")
    assert env is not None
    return env


class EnvironmentFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The query parameters of the list (documented; the route reads them itself)."""

    type: str | None = None  # the environment's type or provider
    status: str | None = None


@api.post(
    "/v1/organizations/{org_id}/environments",
    summary="Create an environment",
    scope="write",
    body=EnvironmentBody,
    response=Environment,
    status=201,
)
@api.post(
    "/v1/environments",
    summary="Create an environment (default organization)",
    scope="write",
    body=EnvironmentBody,
    response=Environment,
    status=201,
)
async def create_environment(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    body = await read_json(request, EnvironmentBody)
    command = c.CreateEnvironment(organization_id=org, **msgspec.structs.asdict(body))
    return await answer_created(
        request,
        "deploy",
        "create_environment",
        command,
        fetch=lambda new_id: fetch_environment(request.app[keys.POOL], new_id),
        location="/v1/environments",
    )


@api.get(
    "/v1/organizations/{org_id}/environments",
    summary="List environments",
    response=Page[Environment],
    query=EnvironmentFilters,
)
@api.get(
    "/v1/environments",
    summary="List environments (default organization)",
    response=Page[Environment],
    query=EnvironmentFilters,
)
async def list_environments(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    page = await fetch_page(
        request,
        f"SELECT {_COLUMNS} FROM deploy.environments WHERE organization_id = $1"  # noqa: S608
        " AND deleted_at IS NULL AND ($2::text IS NULL OR type = $2 OR provider = $2)"
        " AND ($3::text IS NULL OR status = $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5))"
        " ORDER BY created_at, id LIMIT $6",
        org,
        request.query.get("type"),
        request.query.get("status"),
        build=lambda r: Environment(**dict(r)),
    )
    return json_response(page)


@api.get("/v1/environments/{id}", summary="One environment", response=Environment)
async def get_environment(request: web.Request) -> web.Response:
    return json_response(await get_visible_environment(request, request.match_info["id"]))


@api.patch(
    "/v1/environments/{id}",
    summary="Change an environment",
    scope="write",
    body=EnvironmentPatch,
    response=Environment,
)
async def update_environment(request: web.Request) -> web.Response:
    env = await get_visible_environment(request, request.match_info["id"])
    body = await read_json(request, EnvironmentPatch)
    if body.status not in (None, "active", "inactive"):
        raise ValidationFailed("status is active or inactive", "$.status")
    fields = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
    result = await send(
        request,
        "deploy",
        "update_environment",
        c.UpdateEnvironment(environment_id=env.id, **fields),
    )
    await caught_up(request, result)
    return json_response(await fetch_environment(request.app[keys.POOL], env.id))


@api.delete("/v1/environments/{id}", summary="Delete an environment", scope="admin", status=204)
async def delete_environment(request: web.Request) -> web.Response:
    env = await get_visible_environment(request, request.match_info["id"])
    await send(request, "deploy", "delete_environment", c.DeleteEnvironment(environment_id=env.id))
    return web.Response(status=204)
