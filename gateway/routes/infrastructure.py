"""Infrastructure resources (the platform seed): declared here, provisioned by a job at
the provider with the environment's credentials, watched for drift."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import request_org, require_visible
from libs.errors import ValidationFailed
from services.drift import commands as c

api = Api("infrastructure")


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    environment_id: str
    type: str  # server | security_group | volume | bucket
    provider: str
    region: str
    # The spec as declared (after the door's defaults), and the tags DeployForge sets.
    specs: dict[str, Any]
    tags: dict[str, str]
    # provisioning | active | updating | deleting | deleted | failed
    status: str
    # The provider's id (sg-..., i-..., vol-..., the bucket's name) once provisioned.
    provider_id: str | None
    # What the provider reported after the last job.
    attributes: dict[str, Any]
    last_operation: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class ResourceBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: c.Id
    type: c.ResourceType
    provider: str = "aws"
    region: c.Region | None = None
    specs: dict[str, Any]
    tags: dict[str, str] = {}


class ResourcePatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    specs: dict[str, Any] | None = None
    tags: dict[str, str] | None = None


class ResourceFilters(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    type: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    status: Annotated[str, msgspec.Meta(max_length=20)] | None = None


_COLUMNS = (
    "id, organization_id, environment_id, type, provider, region, specs, tags, status,"
    " provider_id, attributes, last_operation, last_error, created_at, updated_at"
)


def _resource(row: asyncpg.Record) -> Resource:
    fields = dict(row)
    for key in ("specs", "tags", "attributes"):  # jsonb: decoded by the pool's codec
        if isinstance(fields[key], str | bytes):
            fields[key] = msgspec.json.decode(fields[key])
    return Resource(**fields)


async def fetch_resource(request: web.Request, resource_id: str) -> Resource | None:
    row = await request.app[keys.POOL].fetchrow(
        f"SELECT {_COLUMNS} FROM drift.resources WHERE id = $1 AND deleted_at IS NULL",  # noqa: S608
        resource_id,
    )
    return _resource(row) if row else None


async def _get(request: web.Request, resource_id: str) -> Resource:
    resource = await fetch_resource(request, resource_id)
    require_visible(
        principal_of(request), resource.organization_id if resource else None, "resource"
    )
    assert resource is not None
    return resource


@api.post(
    "/v1/organizations/{org_id}/infrastructure/resources",
    summary="Declare a resource: provisioned by a job (202), then watched for drift",
    scope="write",
    body=ResourceBody,
    response=Resource,
    status=202,
)
@api.post(
    "/v1/infrastructure/resources",
    summary="Declare a resource (default organization)",
    scope="write",
    body=ResourceBody,
    response=Resource,
    status=202,
)
async def request_resource(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    body = await read_json(request, ResourceBody)
    if body.provider != "aws":
        raise ValidationFailed("provider is aws (the only one so far)", "$.provider")
    command = c.RequestResource(
        organization_id=org,
        environment_id=body.environment_id,
        type=body.type,
        region=body.region,
        specs=body.specs,
        tags=body.tags,
    )
    result = await send(request, "drift", "request_resource", command)
    new_id = msgspec.json.decode(result.data, type=c.Created).id
    await caught_up(request, result)
    resource = await fetch_resource(request, new_id)
    return json_response(
        resource if resource is not None else {"id": new_id, "status": "provisioning"},
        status=202,
        headers={"Location": f"/v1/infrastructure/resources/{new_id}"},
    )


_LIST = (
    f"SELECT {_COLUMNS} FROM drift.resources WHERE organization_id = $1"  # noqa: S608
    " AND deleted_at IS NULL AND ($2::text IS NULL OR environment_id = $2)"
    " AND ($3::text IS NULL OR type = $3) AND ($4::text IS NULL OR status = $4)"
    " AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6))"
    " ORDER BY created_at, id LIMIT $7"
)


@api.get(
    "/v1/organizations/{org_id}/infrastructure/resources",
    summary="List resources",
    response=Page[Resource],
    query=ResourceFilters,
)
@api.get(
    "/v1/infrastructure/resources",
    summary="List resources (default organization)",
    response=Page[Resource],
    query=ResourceFilters,
)
async def list_resources(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    query = {k: v for k, v in request.query.items() if k in ResourceFilters.__struct_fields__}
    filters = convert(query, ResourceFilters)
    page = await fetch_page(
        request, _LIST, org, filters.environment_id, filters.type, filters.status, build=_resource
    )
    return json_response(page)


@api.get(
    "/v1/infrastructure/resources/{id}",
    summary="One resource: its status and the provider's ids",
    response=Resource,
)
async def get_resource(request: web.Request) -> web.Response:
    return json_response(await _get(request, request.match_info["id"]))


@api.patch(
    "/v1/infrastructure/resources/{id}",
    summary="Change a resource's specs or tags (applied by a job: 202)",
    scope="write",
    body=ResourcePatch,
    response=Resource,
    status=202,
)
async def change_resource(request: web.Request) -> web.Response:
    resource = await _get(request, request.match_info["id"])
    body = await read_json(request, ResourcePatch)
    result = await send(
        request,
        "drift",
        "change_resource",
        c.ChangeResource(resource_id=resource.id, specs=body.specs, tags=body.tags),
    )
    await caught_up(request, result)
    return json_response(await fetch_resource(request, resource.id), status=202)


@api.delete(
    "/v1/infrastructure/resources/{id}",
    summary="Deprovision a resource (a job: 202)",
    scope="write",
    response=Resource,
    status=202,
)
async def delete_resource(request: web.Request) -> web.Response:
    resource = await _get(request, request.match_info["id"])
    result = await send(
        request, "drift", "delete_resource", c.DeleteResource(resource_id=resource.id)
    )
    await caught_up(request, result)
    return json_response(await fetch_resource(request, resource.id), status=202)
