"""What shapes an environment's drift scans: ignore rules (by resource type, resource
pattern and JSON pointer, with a reason and an expiry) and the scan schedule (an
interval or a cron line, detecting or remediating)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routes.environments import get_visible_environment
from gateway.routing import Api, json_response, read_json
from gateway.scoping import require_visible
from libs.errors import NotFound
from services.drift import commands as c

api = Api("drift")


# --- ignore rules -----------------------------------------------------------------------


class IgnoreRule(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    environment_id: str
    resource_type: str  # a glob: security_group, *
    resource: str  # a glob over the resource's DeployForge id and its address
    pointer: str  # a JSON pointer pattern; "" silences the resource's findings whole
    reason: str
    expires_at: datetime | None
    created_by: str
    created_at: datetime


class IgnoreRuleBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resource_type: c.Glob = "*"
    resource: c.Glob = "*"
    pointer: c.PointerPattern = ""
    reason: c.Reason
    expires_at: c.When | None = None


_RULE = (
    "id, environment_id, resource_type, resource, pointer, reason, expires_at, created_by,"
    " created_at"
)


def _rule(row: asyncpg.Record) -> IgnoreRule:
    return IgnoreRule(**dict(row))


@api.post(
    "/v1/environments/{id}/drift-ignore-rules",
    summary="Ignore drift by resource type, resource pattern and JSON pointer",
    scope="write",
    body=IgnoreRuleBody,
    response=IgnoreRule,
    status=201,
)
async def add_ignore_rule(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    body = await read_json(request, IgnoreRuleBody)
    command = c.AddIgnoreRule(
        environment_id=environment.id,
        resource_type=body.resource_type,
        resource=body.resource,
        pointer=body.pointer,
        reason=body.reason,
        expires_at=body.expires_at,
    )
    result = await send(request, "drift", "add_ignore_rule", command)
    rule_id = msgspec.json.decode(result.data, type=c.Created).id
    await caught_up(request, result)
    row = await request.app[keys.POOL].fetchrow(
        f"SELECT {_RULE} FROM drift.ignore_rules WHERE id = $1",  # noqa: S608
        rule_id,
    )
    return json_response(
        _rule(row), status=201, headers={"Location": f"/v1/drift-ignore-rules/{rule_id}"}
    )


_RULES = (
    f"SELECT {_RULE} FROM drift.ignore_rules WHERE environment_id = $1"  # noqa: S608
    " AND removed_at IS NULL AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))"
    " ORDER BY created_at, id LIMIT $4"
)


@api.get(
    "/v1/environments/{id}/drift-ignore-rules",
    summary="An environment's ignore rules (expired ones too, with their expiry)",
    response=Page[IgnoreRule],
)
async def list_ignore_rules(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    return json_response(await fetch_page(request, _RULES, environment.id, build=_rule))


@api.get("/v1/drift-ignore-rules/{id}", summary="One ignore rule", response=IgnoreRule)
async def get_ignore_rule(request: web.Request) -> web.Response:
    row = await request.app[keys.POOL].fetchrow(
        f"SELECT {_RULE}, organization_id FROM drift.ignore_rules"  # noqa: S608
        " WHERE id = $1 AND removed_at IS NULL",
        request.match_info["id"],
    )
    require_visible(principal_of(request), row["organization_id"] if row else None, "rule")
    assert row is not None
    fields = {k: v for k, v in row.items() if k != "organization_id"}
    return json_response(IgnoreRule(**fields))


@api.delete(
    "/v1/drift-ignore-rules/{id}",
    summary="Remove an ignore rule (the next scan reports what it silenced)",
    scope="write",
    status=204,
)
async def remove_ignore_rule(request: web.Request) -> web.Response:
    rule_id = request.match_info["id"]
    row = await request.app[keys.POOL].fetchrow(
        "SELECT organization_id FROM drift.ignore_rules WHERE id = $1 AND removed_at IS NULL",
        rule_id,
    )
    require_visible(principal_of(request), row["organization_id"] if row else None, "rule")
    result = await send(request, "drift", "remove_ignore_rule", c.RemoveIgnoreRule(rule_id=rule_id))
    await caught_up(request, result)
    return web.Response(status=204)


# --- the environment's scan schedule ----------------------------------------------------


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str
    interval_seconds: int | None
    cron: str | None  # five fields, UTC
    mode: str  # detect | remediate (infrastructure, rate-limited; never deletes)
    set_by: str
    since: datetime
    last_due: datetime | None  # when it last fired
    last_scan_id: str | None


class ScheduleBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Either: every N seconds (at least 60), or a cron line of five fields in UTC.
    interval_seconds: Annotated[int, msgspec.Meta(ge=1, le=31 * 86400)] | None = None
    cron: Annotated[str, msgspec.Meta(min_length=9, max_length=100, pattern=c.CRON)] | None = None
    mode: Literal["detect", "remediate"] = "detect"


_SCHEDULE = (
    "SELECT environment_id, interval_seconds, cron, mode, set_by, since, last_due, last_scan_id"
    " FROM drift.schedules WHERE environment_id = $1 AND removed_at IS NULL"
)


async def _schedule(request: web.Request, environment_id: str) -> Schedule:
    row = await request.app[keys.POOL].fetchrow(_SCHEDULE, environment_id)
    if row is None:
        raise NotFound("the environment has no drift schedule")
    return Schedule(**dict(row))


@api.put(
    "/v1/environments/{id}/drift-schedule",
    summary="Scan on a schedule (every N seconds or on a cron line), detecting or remediating",
    scope="write",
    body=ScheduleBody,
    response=Schedule,
)
async def set_schedule(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    body = await read_json(request, ScheduleBody)
    command = c.SetSchedule(
        environment_id=environment.id,
        interval_seconds=body.interval_seconds,
        cron=body.cron,
        mode=body.mode,
    )
    await caught_up(request, await send(request, "drift", "set_schedule", command))
    return json_response(await _schedule(request, environment.id))


@api.get(
    "/v1/environments/{id}/drift-schedule",
    summary="The environment's scan schedule",
    response=Schedule,
)
async def get_schedule(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    return json_response(await _schedule(request, environment.id))


@api.delete(
    "/v1/environments/{id}/drift-schedule",
    summary="Stop scanning the environment on a schedule",
    scope="write",
    status=204,
)
async def remove_schedule(request: web.Request) -> web.Response:
    environment = await get_visible_environment(request, request.match_info["id"])
    command = c.RemoveSchedule(environment_id=environment.id)
    await caught_up(request, await send(request, "drift", "remove_schedule", command))
    return web.Response(status=204)
