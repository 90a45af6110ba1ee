"""Logs: what a deployment's steps, a service's instances or one instance printed.

As JSON (the last `tail` lines, optionally between `since` and `until`), or
followed live as server-sent events (`follow=true`); gateway/log_reader.py
reads and follows the log stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web

from gateway import keys
from gateway.log_reader import MAX_TAIL, LogReader, LogWindow, follow
from gateway.routes.deployments import get_visible_deployment
from gateway.routes.instances import get_visible_instance
from gateway.routes.services import get_visible_service
from gateway.routing import Api, convert, json_response
from libs.errors import ValidationFailed
from services.deploy import logs

api = Api("logs")

# RFC 3339, with its offset: a time without one would mean a different moment
# on every machine.
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class LogsQuery(msgspec.Struct, frozen=True, kw_only=True):
    tail: Annotated[int, msgspec.Meta(ge=1, le=MAX_TAIL)] = 1000
    follow: bool = False
    # Only lines whose `ts` is at or after `since`, and at or before `until`.
    since: Timestamp | None = None
    until: Timestamp | None = None
    # Service logs only: the lines of the instances in this environment.
    environment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


def _query(request: web.Request) -> LogsQuery:
    query = convert(
        {k: v for k, v in request.query.items() if k in LogsQuery.__struct_fields__}, LogsQuery
    )
    if query.since is not None and query.until is not None and query.until < query.since:
        raise ValidationFailed("until is before since", "$.until")
    if query.follow and query.until is not None:
        raise ValidationFailed("a followed log has no end: leave out until", "$.until")
    return query


class DeploymentLogs(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    lines: list[logs.LogLine]


class ServiceLogs(msgspec.Struct, frozen=True, kw_only=True):
    service_id: str
    # `step` holds the instance that printed the line.
    lines: list[logs.LogLine]


class InstanceLogs(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    service_id: str
    lines: list[logs.LogLine]


async def _stored(reader: LogReader, tail: int) -> list[logs.LogLine]:
    try:
        await reader.open()
        lines = await reader.stored(tail)
    finally:
        await reader.close()
    return [line for _, line in lines]


@api.get(
    "/v1/deployments/{id}/logs",
    summary="A deployment's log lines (?tail=&since=&until=); ?follow=true streams them (SSE)",
    response=DeploymentLogs,
    query=LogsQuery,
    stream=True,
)
async def deployment_logs(request: web.Request) -> web.StreamResponse:
    deployment = await get_visible_deployment(request, request.match_info["id"])
    query = _query(request)
    reader = LogReader(
        request.app[keys.NC].jetstream(),
        request.app[keys.SETTINGS].namespace,
        deployment.id,
        window=LogWindow(since=query.since, until=query.until),
    )
    if query.follow:
        return await follow(request, reader, deployment, query.tail)
    lines = await _stored(reader, query.tail)
    return json_response(DeploymentLogs(deployment_id=deployment.id, lines=lines))


@api.get(
    "/v1/services/{id}/logs",
    summary="What a service's instances printed (?tail=&since=&until=&environment_id=);"
    " ?follow=true streams it",
    response=ServiceLogs,
    query=LogsQuery,
    stream=True,
)
async def service_logs(request: web.Request) -> web.StreamResponse:
    service = await get_visible_service(request, request.match_info["id"])
    query = _query(request)
    reader = LogReader(
        request.app[keys.NC].jetstream(),
        request.app[keys.SETTINGS].namespace,
        service.id,
        with_events=False,
        window=LogWindow(since=query.since, until=query.until, environment_id=query.environment_id),
    )
    if query.follow:
        return await follow(request, reader, None, query.tail)
    lines = await _stored(reader, query.tail)
    return json_response(ServiceLogs(service_id=service.id, lines=lines))


@api.get(
    "/v1/instances/{id}/logs",
    summary="What one instance printed (?tail=&since=&until=); ?follow=true streams it",
    response=InstanceLogs,
    query=LogsQuery,
    stream=True,
)
async def instance_logs(request: web.Request) -> web.StreamResponse:
    instance = await get_visible_instance(request, request.match_info["id"])
    query = _query(request)
    # An instance's lines are in its service's log, each naming the instance.
    reader = LogReader(
        request.app[keys.NC].jetstream(),
        request.app[keys.SETTINGS].namespace,
        instance.service_id,
        with_events=False,
        window=LogWindow(since=query.since, until=query.until, step=instance.instance_id),
    )
    if query.follow:
        return await follow(request, reader, None, query.tail)
    lines = await _stored(reader, query.tail)
    return json_response(
        InstanceLogs(instance_id=instance.instance_id, service_id=instance.service_id, lines=lines)
    )
