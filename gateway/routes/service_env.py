"""A service's environment variables: listed (secrets without their value), set, removed."""

from __future__ import annotations

from datetime import datetime

import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import caught_up, send
from gateway.routes.services import get_visible_service
from gateway.routing import Api, convert, json_response, read_json
from services.deploy import commands as c

api = Api("services")


class EnvVar(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    secret: bool
    # Secret values are never shown again.
    value: str | None
    updated_at: datetime


class EnvVarBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    value: str
    secret: bool = False


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
