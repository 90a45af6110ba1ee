"""Instances: the processes that run a service's releases, by id, in every service.

They are what the agents report (services/deploy/instance_state.py), not a read
model: listing them reads the reports as they are now. Start, stop, restart
and remove are requests the agent running the instance acts on (202).
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

import msgspec
from aiohttp import web
from nats.js.kv import KeyValue

from gateway import keys
from gateway.commands import send
from gateway.middleware import principal_of
from gateway.pagination import Page, PageQuery
from gateway.routing import Api, convert, json_response
from gateway.scoping import request_org, require_visible
from libs.errors import NotFound, ValidationFailed
from services.deploy import commands as c
from services.deploy import instance_state
from services.deploy.instance_state import InstanceReport

api = Api("instances")


class InstanceQuery(PageQuery, frozen=True, kw_only=True, forbid_unknown_fields=False):
    service_id: str | None = None
    environment_id: str | None = None


class InstanceAction(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    service_id: str
    environment_id: str
    action: str


def _bucket(request: web.Request) -> KeyValue:
    return request.app[keys.INSTANCES]


async def _organization_of(request: web.Request, service_id: str) -> str | None:
    # Deleted services included: deleting one stops nothing, its instances still run.
    org: str | None = await request.app[keys.POOL].fetchval(
        "SELECT organization_id FROM deploy.services WHERE id = $1", service_id
    )
    return org


async def get_visible_instance(request: web.Request, instance_id: str) -> InstanceReport:
    """The instance's latest report; 404 unless the caller may see its service."""
    principal = principal_of(request)
    report = await instance_state.find(_bucket(request), instance_id)
    org = await _organization_of(request, report.service_id) if report else None
    require_visible(principal, org, "instance")
    assert report is not None
    if principal.service_id is not None and principal.service_id != report.service_id:
        raise NotFound("instance not found")
    return report


def _cursor(cursor: str | None) -> str:
    """The key after which the page starts ("" for the first page)."""
    if cursor is None:
        return ""
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("malformed cursor", "cursor") from None


@api.get(
    "/v1/organizations/{org_id}/instances",
    summary="Instances of the organization's services (?service_id=&environment_id=)",
    response=Page[InstanceReport],
    query=InstanceQuery,
)
@api.get(
    "/v1/instances",
    summary="Instances of the services of the default organization",
    response=Page[InstanceReport],
    query=InstanceQuery,
)
async def list_instances(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org = request_org(request, principal)
    query = convert(dict(request.query), InstanceQuery)
    after = _cursor(query.cursor)
    rows = await request.app[keys.POOL].fetch(
        "SELECT id FROM deploy.services WHERE organization_id = $1", org
    )
    services = {r["id"] for r in rows}
    kv = _bucket(request)
    wanted = principal.service_id or query.service_id
    if wanted is not None and instance_state.INSTANCE_ID.fullmatch(wanted):
        reports = sorted(await instance_state.of_service(kv, wanted), key=lambda r: r.key)
    else:
        reports = await instance_state.everywhere(kv)
    matching = [
        r
        for r in reports
        if r.service_id in services
        and wanted in (None, r.service_id)
        and query.environment_id in (None, r.environment_id)
        and r.key > after
    ]
    items = matching[: query.limit]
    next_cursor = None
    if len(matching) > query.limit:
        next_cursor = base64.urlsafe_b64encode(items[-1].key.encode()).decode()
    return json_response(Page(items=items, next_cursor=next_cursor))


@api.get(
    "/v1/instances/{id}",
    summary="One instance: pid, port, status, uptime, restarts, CPU, memory",
    response=InstanceReport,
)
async def get_instance(request: web.Request) -> web.Response:
    return json_response(await get_visible_instance(request, request.match_info["id"]))


Action = Literal["start", "stop", "restart", "remove"]


async def _control(request: web.Request, action: Action) -> web.Response:
    instance = await get_visible_instance(request, request.match_info["id"])
    await send(
        request,
        "deploy",
        "control_instance",
        c.ControlInstance(
            service_id=instance.service_id,
            environment_id=instance.environment_id,
            instance_id=instance.instance_id,
            action=action,
        ),
    )
    # Accepted: the agent running the instance acts on it; watch the instance.
    return json_response(
        InstanceAction(
            instance_id=instance.instance_id,
            service_id=instance.service_id,
            environment_id=instance.environment_id,
            action=action,
        ),
        status=202,
    )


@api.post(
    "/v1/instances/{id}/start",
    summary="Start a stopped instance again (its release, on a fresh port)",
    scope="deploy",
    response=InstanceAction,
    status=202,
)
async def start_instance(request: web.Request) -> web.Response:
    return await _control(request, "start")


@api.post(
    "/v1/instances/{id}/stop",
    summary="Stop an instance (kept, as stopped, for start)",
    scope="deploy",
    response=InstanceAction,
    status=202,
)
async def stop_instance(request: web.Request) -> web.Response:
    return await _control(request, "stop")


@api.post(
    "/v1/instances/{id}/restart",
    summary="Restart an instance: stopped, then started again on a fresh port",
    scope="deploy",
    response=InstanceAction,
    status=202,
)
async def restart_instance(request: web.Request) -> web.Response:
    return await _control(request, "restart")


@api.delete(
    "/v1/instances/{id}",
    summary="Stop an instance and forget it",
    scope="deploy",
    response=InstanceAction,
    status=202,
)
async def remove_instance(request: web.Request) -> web.Response:
    return await _control(request, "remove")
