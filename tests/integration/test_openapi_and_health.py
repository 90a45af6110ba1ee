"""The API describes itself, and says when it is not ready."""

from __future__ import annotations

import asyncio

from tests.conftest import Stack


async def test_openapi_document_lists_every_route_with_its_schemas(stack: Stack) -> None:
    resp = await stack.client.get("/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    login = doc["paths"]["/v1/auth/login"]["post"]
    schema_ref = login["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    login_schema = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(login_schema["required"]) == {"email", "password"}
    assert doc["paths"]["/v1/tokens"]["post"]["x-required-scope"] == "write"
    for path in ("/v1/users/me", "/v1/organizations/{id}/members", "/v1/auth/jwks.json"):
        assert path in doc["paths"]
    page = await stack.client.get("/docs")
    assert page.status == 200
    assert "/v1/auth/refresh" in await page.text()


async def test_readyz_reports_a_stopped_service(stack: Stack) -> None:
    await stack.start_all()
    ready = await stack.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {
        "nats": "ok",
        "postgres": "ok",
        "auth": "ok",
        "deploy": "ok",
        "domains": "ok",
        "drift": "ok",
        "webhooks": "ok",
        "audit": "ok",
    }
    await stack.close_services()
    for _ in range(100):
        resp = await stack.client.get("/readyz")
        if resp.status == 503:
            break
        await asyncio.sleep(0.05)
    body = await resp.json()
    assert resp.status == 503
    assert body["checks"]["auth"] == "down"
    login = await stack.client.post(
        "/v1/auth/login", json={"email": "a@example.com", "password": "x"}
    )
    assert login.status == 503
    assert (await login.json())["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_metrics_are_in_prometheus_format(stack: Stack) -> None:
    await stack.client.get("/v1/users/me", headers=stack.auth())
    resp = await stack.client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert 'deployforge_http_requests_total{method="GET",route="/v1/users/me",status="200"}' in text


async def test_a_request_trace_reaches_the_event_it_causes(stack: Stack) -> None:
    import nats

    from libs.eventstore import EventStore
    from services.auth.events import STREAM
    from services.auth.handlers import ORGS

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    resp = await stack.client.post(
        "/v1/organizations",
        json={"name": "Traced"},
        headers={**stack.auth(), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert resp.status == 201
    assert resp.headers["traceparent"].split("-")[1] == trace_id
    org_id = (await resp.json())["id"]
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        store.register(STREAM)
        loaded = await store.load("organization", org_id, ORGS.codec)
    finally:
        await nc.close()
    assert loaded.events
    for recorded in loaded.events:
        assert recorded.meta.traceparent is not None
        assert recorded.meta.traceparent.split("-")[1] == trace_id
        assert recorded.meta.actor == stack.admin_id
