"""Prometheus-format metrics for every process.

The gateway serves them at `/metrics`; a service serves them on its own
`DEPLOYFORGE_METRICS_PORT` when one is set.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

COMMANDS = Counter(
    "deployforge_commands_total", "Commands handled", ["service", "command", "outcome"]
)
EVENTS_APPENDED = Counter("deployforge_events_appended_total", "Events appended", ["aggregate"])
PROJECTED = Counter("deployforge_events_projected_total", "Events applied", ["projection"])
CONSUMED = Counter(
    "deployforge_consumer_messages_total", "Messages pulled by a durable consumer", ["consumer"]
)
CONSUMER_RESTARTS = Counter(
    "deployforge_consumer_restarts_total",
    "Times a durable consumer's loop failed and started again",
    ["consumer"],
)
PROJECTION_STALLED = Gauge(
    "deployforge_projection_stalled_sequence",
    "Stream sequence of the event a projection is stopped at (0 while it runs)",
    ["projection"],
)
PROJECTION_RETRIES = Counter(
    "deployforge_projection_retries_total",
    "Transient failures after which a projection runner retried",
    ["projection"],
)
WEBHOOK_ATTEMPTS = Counter(
    "deployforge_webhook_attempts_total", "Webhook delivery attempts", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "deployforge_webhook_attempt_seconds",
    "Webhook delivery attempt latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
HTTP_REQUESTS = Counter(
    "deployforge_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "deployforge_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def render() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


async def metrics_handler(_: web.Request) -> web.Response:
    body, content_type = render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def start_metrics_server(
    host: str, port: int, *, ready: asyncio.Event | None = None
) -> web.AppRunner:
    """Serve `/metrics` on host:port (and `/readyz`, 200 once `ready` is set, when
    given); the caller cleans the runner up."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    if ready is not None:
        readiness = ready

        async def readyz(_: web.Request) -> web.Response:
            ok = readiness.is_set()
            return web.json_response({"ready": ok}, status=200 if ok else 503)

        app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
