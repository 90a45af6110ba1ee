"""One request followed end to end: the trace id and the request id of a deploy request
are found in the gateway's, deploy's and webhooks' spans and log lines, in the events it
caused, in the delivery the receiver got and in the delivery log.

The services run in this process, so one in-memory exporter sees every span, and the
log lines are told apart by what they say (`request`, `dispatch_step`,
`delivery_attempted`)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.logging import _add_trace_ids
from tests.conftest import Stack
from tests.integration.webhooks.conftest import (
    Receivers,
    create_webhook,
    deliveries,
    until_delivery,
    verify,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span ended while the test runs (the provider, once set, stays for the
    session: OpenTelemetry allows one; the exporter stops taking spans afterwards)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()


async def _resources(stack: Stack) -> tuple[str, str]:
    async def post(path: str, body: dict[str, Any]) -> str:
        resp = await stack.client.post(path, json=body, headers=stack.auth())
        assert resp.status == 201, await resp.text()
        created: str = (await resp.json())["id"]
        return created

    env = await post("/v1/environments", {"name": "traced"})
    project = await post("/v1/projects", {"name": "Traced"})
    service = await post(
        "/v1/services",
        {
            "project_id": project,
            "name": "web",
            "repository_url": "https://example.com/web.git",
            "run_command": ["python", "app.py"],
        },
    )
    return env, service


def _in_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and s.context.trace_id == trace_id
    ]


async def test_one_deploy_request_is_followed_through_every_service(
    stack: Stack, receivers: Receivers, spans: InMemorySpanExporter
) -> None:
    await stack.start_webhooks()
    receiver = await receivers()
    hook = await create_webhook(stack, receiver.url, ["deployment.created"])
    env, service = await _resources(stack)
    trace_hex = secrets.token_hex(16)
    request_id = "req_traced_" + secrets.token_hex(6)

    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, _add_trace_ids]
    ) as lines:
        resp = await stack.client.post(
            f"/v1/services/{service}/deployments",
            json={"environment_id": env},
            headers={
                **stack.auth(),
                "X-Request-Id": request_id,
                "traceparent": f"00-{trace_hex}-{secrets.token_hex(8)}-01",
            },
        )
        assert resp.status == 201, await resp.text()
        deployment = (await resp.json())["id"]
        got = await receiver.wait_for(lambda r: len(r) >= 1)
        delivery = await until_delivery(stack, hook["id"], lambda d: d["status"] == "succeeded")
        # The dispatch process's cascade (queued, taken, dispatched) is projected too.
        for _ in range(100):
            names = {s.name for s in _in_trace(spans, int(trace_hex, 16))}
            if "project deployment.dispatched" in names:
                break
            await asyncio.sleep(0.05)

    # The receiver's payload and the delivery log name the request.
    payload = verify(hook["secret"], got[0])
    assert payload["data"]["deployment_id"] == deployment
    assert payload["metadata"]["correlation_id"] == request_id
    assert delivery["correlation_id"] == request_id
    assert (await deliveries(stack, hook["id"]))[0]["correlation_id"] == request_id

    # Spans: gateway, deploy's command, the projection, the dispatch process and its
    # cascaded event, the webhook fan-out and the delivery attempt, all in one trace.
    traced = _in_trace(spans, int(trace_hex, 16))
    by_name = {s.name: s for s in traced}
    scopes = {s.instrumentation_scope.name for s in traced if s.instrumentation_scope}
    assert {
        "deployforge.gateway",
        "deployforge.messaging",
        "deployforge.projections",
        "deployforge.deploy",
        "deployforge.webhooks",
    } <= scopes, sorted(by_name)
    assert "POST /v1/services/{id}/deployments" in by_name
    assert "deploy.create_deployment" in by_name
    assert "project deployment.created" in by_name
    assert "dispatch after deployment.created" in by_name
    assert "project deployment.dispatched" in by_name
    attempt = by_name["webhook attempt"]
    assert attempt.attributes is not None
    assert attempt.attributes["deployforge.delivery_id"] == delivery["id"]
    assert attempt.attributes["http.response.status_code"] == 200

    # Log lines: each service's carries the trace id and the request id.
    def said(event: str) -> list[dict[str, Any]]:
        return [
            line for line in lines if line["event"] == event and line.get("trace_id") == trace_hex
        ]

    assert [line["request_id"] for line in said("request")] == [request_id]
    assert said("dispatch_step")
    assert all(line["correlation_id"] == request_id for line in said("dispatch_step"))
    attempts = said("delivery_attempted")
    assert [line["delivery_id"] for line in attempts] == [delivery["id"]]
    assert attempts[0]["correlation_id"] == request_id
