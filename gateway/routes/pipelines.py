"""Pipelines (the platform API): named ordered steps for a service; a run is a deployment."""

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
from gateway.routes.deployments import Deployment, DeploymentFilters, fetch_deployment, history
from gateway.routes.services import get_visible_service
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import request_org, require_visible
from libs.errors import NotFound, ValidationFailed
from services.deploy import commands as c

api = Api("pipelines")


class Pipeline(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    service_id: str
    name: str
    steps: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class PipelineBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: c.Name
    steps: list[c.PipelineStepBody]


class PipelinePatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: c.Name | None = None
    # Replaces every step.
    steps: list[c.PipelineStepBody] | None = None


class RunBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The environment by id, or by name as the platform API sends it.
    environment_id: c.Id | None = None
    environment: str | None = None
    branch: str | None = None
    parameters: dict[str, c.ParameterValue] = {}


_COLUMNS = (
    "id, organization_id, service_id, name, steps, created_at,"
    " coalesce(updated_at, created_at) AS updated_at"
)


async def fetch_pipeline(pool: asyncpg.Pool, pipeline_id: str) -> Pipeline | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM deploy.pipelines WHERE id = $1 AND deleted_at IS NULL",  # noqa: S608
        pipeline_id,
    )
    return Pipeline(**dict(row)) if row else None


async def _get(request: web.Request, pipeline_id: str) -> Pipeline:
    principal = principal_of(request)
    pipeline = await fetch_pipeline(request.app[keys.POOL], pipeline_id)
    require_visible(principal, pipeline.organization_id if pipeline else None, "pipeline")
    assert pipeline is not None
    if principal.service_id is not None and principal.service_id != pipeline.service_id:
        raise NotFound("pipeline not found")
    return pipeline


class PipelineFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The query parameters of the list (documented; the route reads them itself)."""

    service_id: str | None = None


@api.post(
    "/v1/services/{id}/pipelines",
    summary="Create a pipeline for a service",
    scope="write",
    body=PipelineBody,
    response=Pipeline,
    status=201,
)
async def create_pipeline(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    body = await read_json(request, PipelineBody)
    command = convert({"service_id": service.id, **msgspec.to_builtins(body)}, c.CreatePipeline)
    return await answer_created(
        request,
        "deploy",
        "create_pipeline",
        command,
        fetch=lambda new_id: fetch_pipeline(request.app[keys.POOL], new_id),
        location="/v1/pipelines",
    )


@api.get(
    "/v1/organizations/{org_id}/pipelines",
    summary="List pipelines",
    response=Page[Pipeline],
    query=PipelineFilters,
)
@api.get(
    "/v1/pipelines",
    summary="List pipelines (default organization)",
    response=Page[Pipeline],
    query=PipelineFilters,
)
async def list_pipelines(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org = request_org(request, principal)
    page = await fetch_page(
        request,
        f"SELECT {_COLUMNS} FROM deploy.pipelines WHERE organization_id = $1"  # noqa: S608
        " AND deleted_at IS NULL AND ($2::text IS NULL OR service_id = $2)"
        " AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))"
        " ORDER BY created_at, id LIMIT $5",
        org,
        principal.service_id or request.query.get("service_id"),
        build=lambda r: Pipeline(**dict(r)),
    )
    return json_response(page)


@api.get("/v1/pipelines/{id}", summary="One pipeline", response=Pipeline)
async def get_pipeline(request: web.Request) -> web.Response:
    return json_response(await _get(request, request.match_info["id"]))


@api.patch(
    "/v1/pipelines/{id}",
    summary="Rename a pipeline or replace its steps",
    scope="write",
    body=PipelinePatch,
    response=Pipeline,
)
async def update_pipeline(request: web.Request) -> web.Response:
    pipeline = await _get(request, request.match_info["id"])
    body = await read_json(request, PipelinePatch)
    fields = {k: v for k, v in msgspec.to_builtins(body).items() if v is not None}
    command = convert({"pipeline_id": pipeline.id, **fields}, c.UpdatePipeline)
    result = await send(request, "deploy", "update_pipeline", command)
    await caught_up(request, result)
    return json_response(await fetch_pipeline(request.app[keys.POOL], pipeline.id))


@api.get(
    "/v1/pipelines/{id}/runs",
    summary="The deployments a pipeline ran, newest first",
    response=Page[Deployment],
    query=DeploymentFilters,
)
async def pipeline_runs(request: web.Request) -> web.Response:
    pipeline = await _get(request, request.match_info["id"])
    return await history(request, pipeline.organization_id, pipeline_id=pipeline.id)


@api.delete("/v1/pipelines/{id}", summary="Delete a pipeline", scope="write", status=204)
async def delete_pipeline(request: web.Request) -> web.Response:
    pipeline = await _get(request, request.match_info["id"])
    await send(request, "deploy", "delete_pipeline", c.DeletePipeline(pipeline_id=pipeline.id))
    return web.Response(status=204)


@api.post(
    "/v1/pipelines/{id}/run",
    summary="Run a pipeline: a deployment whose steps are the pipeline's, after the build",
    scope="deploy",
    body=RunBody,
    response=Deployment,
    status=201,
)
async def run_pipeline(request: web.Request) -> web.Response:
    pipeline = await _get(request, request.match_info["id"])
    body = await read_json(request, RunBody)
    environment_id = body.environment_id
    if environment_id is None and body.environment is not None:
        environment_id = await request.app[keys.POOL].fetchval(
            "SELECT id FROM deploy.environments WHERE organization_id = $1 AND name = $2"
            " AND deleted_at IS NULL ORDER BY created_at LIMIT 1",
            pipeline.organization_id,
            body.environment,
        )
        if environment_id is None:
            raise NotFound("no environment with that name", {"field": "$.environment"})
    if environment_id is None:
        raise ValidationFailed("name the environment", "$.environment_id")
    command = convert(
        {
            "pipeline_id": pipeline.id,
            "environment_id": environment_id,
            "branch": body.branch,
            "parameters": body.parameters,
        },
        c.RunPipeline,
    )
    return await answer_created(
        request,
        "deploy",
        "run_pipeline",
        command,
        fetch=lambda new_id: fetch_deployment(request.app[keys.POOL], new_id),
        location="/v1/deployments",
    )
