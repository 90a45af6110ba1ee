"""Projects: a named group of services."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import answer_created, caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, json_response, read_json
from gateway.scoping import request_org, require_visible
from services.deploy import commands as c

api = Api("projects")


class Project(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    name: str
    slug: str
    description: str
    created_at: datetime
    updated_at: datetime


class ProjectBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: c.Name
    slug: c.Slug | None = None
    description: c.Text = ""


class ProjectPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: c.Name | None = None
    description: c.Text | None = None


_COLUMNS = "id, organization_id, name, slug, description, created_at, updated_at"


async def fetch_project(pool: asyncpg.Pool, project_id: str) -> Project | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM deploy.projects WHERE id = $1 AND deleted_at IS NULL",  # noqa: S608
        project_id,
    )
    return Project(**dict(row)) if row else None


async def _get(request: web.Request, project_id: str) -> Project:
    project = await fetch_project(request.app[keys.POOL], project_id)
    require_visible(principal_of(request), project.organization_id if project else None, "project")
    assert project is not None
    return project


@api.post(
    "/v1/organizations/{org_id}/projects",
    summary="Create a project",
    scope="write",
    body=ProjectBody,
    response=Project,
    status=201,
)
@api.post(
    "/v1/projects",
    summary="Create a project (default organization)",
    scope="write",
    body=ProjectBody,
    response=Project,
    status=201,
)
async def create_project(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    body = await read_json(request, ProjectBody)
    return await answer_created(
        request,
        "deploy",
        "create_project",
        c.CreateProject(organization_id=org, **msgspec.structs.asdict(body)),
        fetch=lambda new_id: fetch_project(request.app[keys.POOL], new_id),
        location="/v1/projects",
    )


@api.get("/v1/organizations/{org_id}/projects", summary="List projects", response=Page[Project])
@api.get("/v1/projects", summary="List projects (default organization)", response=Page[Project])
async def list_projects(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    page = await fetch_page(
        request,
        f"SELECT {_COLUMNS} FROM deploy.projects WHERE organization_id = $1"  # noqa: S608
        " AND deleted_at IS NULL AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))"
        " ORDER BY created_at, id LIMIT $4",
        org,
        build=lambda r: Project(**dict(r)),
    )
    return json_response(page)


@api.get("/v1/projects/{id}", summary="One project", response=Project)
async def get_project(request: web.Request) -> web.Response:
    return json_response(await _get(request, request.match_info["id"]))


@api.patch(
    "/v1/projects/{id}",
    summary="Change a project",
    scope="write",
    body=ProjectPatch,
    response=Project,
)
async def update_project(request: web.Request) -> web.Response:
    project = await _get(request, request.match_info["id"])
    body = await read_json(request, ProjectPatch)
    fields = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
    result = await send(
        request, "deploy", "update_project", c.UpdateProject(project_id=project.id, **fields)
    )
    await caught_up(request, result)
    return json_response(await fetch_project(request.app[keys.POOL], project.id))


@api.delete(
    "/v1/projects/{id}",
    summary="Delete a project (once it has no services)",
    scope="admin",
    status=204,
)
async def delete_project(request: web.Request) -> web.Response:
    project = await _get(request, request.match_info["id"])
    await send(request, "deploy", "delete_project", c.DeleteProject(project_id=project.id))
    return web.Response(status=204)
