"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from deployforge.projections import CONTEXTS
from gateway import keys
from gateway.routing import Api, json_response
from libs.metrics import metrics_handler

api = Api("health")

# Services whose commands the gateway sends; /readyz needs each to answer.
SERVICES = tuple(context.name for context in CONTEXTS)


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, str]


@api.get("/healthz", summary="The gateway process is alive", scope=None, rate_limited=False)
async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@api.get(
    "/readyz",
    summary="NATS, Postgres and every service answer, and no read model is stalled",
    scope=None,
    response=Readiness,
    rate_limited=False,
)
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    nc = request.app[keys.NC]
    checks["nats"] = "ok" if nc.is_connected else "down"
    try:
        async with asyncio.timeout(1.0):
            stalled = await request.app[keys.POOL].fetch(
                "SELECT projection, stream, stalled_at FROM deployforge.projection_checkpoints "
                "WHERE stalled_at IS NOT NULL ORDER BY projection"
            )
        checks["postgres"] = "ok"
    except (TimeoutError, OSError, Exception) as exc:  # any failure means not ready
        checks["postgres"] = f"down: {type(exc).__name__}"
        stalled = []
    # A read model stopped at an event it cannot apply serves ever staler data.
    for row in stalled:
        checks[f"projection:{row['projection']}"] = (
            f"stalled at {row['stream']} sequence {row['stalled_at']}"
        )
    bus = request.app[keys.BUS]
    answers = await asyncio.gather(*(bus.ping(name) for name in SERVICES))
    for name, ok in zip(SERVICES, answers, strict=True):
        checks[name] = "ok" if ok else "down"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        Readiness(status="ready" if ready else "not_ready", checks=checks),
        status=200 if ready else 503,
    )


@api.get("/metrics", summary="Prometheus metrics", scope=None, rate_limited=False)
async def metrics(request: web.Request) -> web.Response:
    return await metrics_handler(request)
