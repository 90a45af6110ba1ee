"""A deployment's live log for the page: the API's event stream (`?follow=true`),
re-sent to the browser as HTML fragments that htmx's SSE extension swaps in.

The API's event ids pass through, and a browser that reconnects sends the last one
back (Last-Event-ID), which goes on to the API: no line is shown twice or lost.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from aiohttp import web
from deployforge_client.errors import APIConnectionError, APIError
from markupsafe import escape

from gateway.ui.handling import api_of

routes = web.RouteTableDef()
# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0


def fragment(event: str, data: Any) -> str:
    """The HTML a browser swaps in for one API event."""
    if event == "log":
        stamp = str(data.get("ts", ""))[11:19]
        step = f' <span class="step">{escape(data["step"])}</span>' if data.get("step") else ""
        return (
            f'<div class="line"><time>{escape(stamp)}</time>{step}'
            f" <span>{escape(data.get('line', ''))}</span></div>"
        )
    status = escape(data.get("status", ""))
    detail = ""
    if data.get("step"):
        detail = f" · {escape(data['step'])} {escape(data.get('state') or '')}"
    if data.get("reason"):
        detail += f" · {escape(data['reason'])}"
    return f'<span class="badge {status}">{status}</span>{detail}'


def frame(event: str, html: str, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"] + ([f"id: {event_id}"] if event_id else [])
    lines += [f"data: {part}" for part in html.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


@routes.get("/deployments/{id}/live")
async def deployment_live(request: web.Request) -> web.StreamResponse:
    return await _relay(request, f"/v1/deployments/{quote(request.match_info['id'], safe='')}/logs")


@routes.get("/services/{id}/live")
async def service_live(request: web.Request) -> web.StreamResponse:
    """What the service's instances print (the last 100 lines, then as they come)."""
    path = f"/v1/services/{quote(request.match_info['id'], safe='')}/logs"
    return await _relay(request, path, tail="100")


async def _relay(request: web.Request, path: str, **params: str) -> web.StreamResponse:
    api = api_of(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        try:
            async for event in api.events(
                path, last_event_id=request.headers.get("Last-Event-ID"), follow="true", **params
            ):
                name = event.event if event.event in ("log", "status", "end") else None
                if name is None:
                    continue
                await queue.put(frame(name, fragment(name, event.data), event.id))
        except (APIError, APIConnectionError) as exc:
            message = getattr(exc, "message", "the log stream broke; reload")
            await queue.put(frame("status", f'<span class="badge failed">{escape(message)}</span>'))
            await queue.put(frame("end", ""))
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                chunk = b": keepalive\n\n"
            if chunk is None:
                break
            await response.write(chunk)
    except ConnectionResetError:
        pass  # the page was closed
    finally:
        task.cancel()
    return response
