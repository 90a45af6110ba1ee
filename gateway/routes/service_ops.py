"""Running a service: its instances, start/stop/restart, and its health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import send
from gateway.routes.services import get_visible_service
from gateway.routing import Api, convert, json_response, read_json
from services.deploy import commands as c
from services.deploy import instance_state
from services.deploy.health_score import ServiceHealth, health_of

api = Api("services")


# Only this environment's (every environment's when left out).
class HealthQuery(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


@api.get(
    "/v1/services/{id}/instances",
    summary="A service's running instances: pid, port, uptime, restarts, CPU, memory",
    response=list[instance_state.InstanceReport],
    query=HealthQuery,
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


@api.get(
    "/v1/services/{id}/health",
    summary="A service's health per environment (?environment_id=), with a score and checks",
    response=ServiceHealth,
    query=HealthQuery,
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
