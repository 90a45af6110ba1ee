"""Sending a command from a route, and answering with its consistency token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from gateway import keys
from gateway.middleware import EXTRA_HEADERS, PRINCIPAL
from gateway.routing import json_response
from libs.messaging import CommandResult
from libs.principal import Principal


async def send(
    request: web.Request, service: str, command: str, payload: msgspec.Struct | dict[str, Any]
) -> CommandResult:
    """Send `command` to `service` as the caller; the reply's position becomes a header."""
    principal = request.get(PRINCIPAL)
    result = await request.app[keys.BUS].request(
        service,
        command,
        payload,
        principal=principal if isinstance(principal, Principal) else None,
        request_id=request.get(keys.REQUEST_ID),
    )
    if result.position:
        request[EXTRA_HEADERS]["X-Consistency-Token"] = result.position
    return result


async def caught_up(request: web.Request, result: CommandResult) -> bool:
    """Wait (bounded) until the read model holds what the command wrote."""
    if not result.position:
        return True
    settings = request.app[keys.SETTINGS]
    return await request.app[keys.CONSISTENCY].wait(
        result.position, settings.consistency_wait_ms / 1000
    )


class _Created(msgspec.Struct, frozen=True):
    id: str


async def answer_created(
    request: web.Request,
    service: str,
    command: str,
    payload: msgspec.Struct,
    *,
    fetch: Callable[[str], Awaitable[Any]],
    location: str,
) -> web.Response:
    """Send a creating command, then answer 201 with the new resource as the read model
    has it (waiting for it, bounded) and its `Location` (`location` + `/` + id)."""
    result = await send(request, service, command, payload)
    new_id = msgspec.json.decode(result.data, type=_Created).id
    await caught_up(request, result)
    row = await fetch(new_id)
    return json_response(
        row if row is not None else {"id": new_id},
        status=201,
        headers={"Location": f"{location}/{new_id}"},
    )
