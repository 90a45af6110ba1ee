"""Domains through the gateway, verified against a real DNS server (pebble-challtestsrv):
add, the records to create, TXT verification, one claim per name across organizations,
the DevFlow and dployr shapes, and the events a webhook receiver gets."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import nats
import pytest

from libs.eventstore import EventStore
from libs.replay import replay
from services.domains.projection import DomainProjection
from tests.challtestsrv import ChallTestSrv
from tests.conftest import Stack
from tests.receivers import Receivers, verify

EDGE = "203.0.113.10"


@pytest.fixture
async def domains(stack: Stack, dns: ChallTestSrv) -> Stack:
    await stack.start(
        "domains",
        domains_dns_resolver=dns.resolver,
        domains_dns_timeout_seconds=2.0,
        edge_public_addresses=EDGE,
    )
    return stack


async def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json() if status != 204 else None


async def _service(stack: Stack, headers: dict[str, str]) -> tuple[str, str]:
    client = stack.client
    env = await _ok(
        await client.post("/v1/environments", json={"name": "prod"}, headers=headers), 201
    )
    project = await _ok(
        await client.post("/v1/projects", json={"name": "Shop"}, headers=headers), 201
    )
    body = {
        "project_id": project["id"],
        "name": "web",
        "repository_url": "https://example.com/web.git",
        "run_command": ["python", "app.py"],
    }
    service = await _ok(await client.post("/v1/services", json=body, headers=headers), 201)
    return service["id"], env["id"]


async def _add(stack: Stack, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    resp = await stack.client.post("/v1/domains", json=body, headers=headers or stack.auth())
    return resp.status, await resp.json()


async def test_a_domain_is_verified_by_its_txt_record_and_its_addresses_recorded(
    domains: Stack, dns: ChallTestSrv, receivers: Receivers
) -> None:
    stack = domains
    await stack.start_webhooks()
    receiver = await receivers()
    hook = await _ok(
        await stack.client.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["domain.*"]}, headers=stack.auth()
        ),
        201,
    )
    service, env = await _service(stack, stack.auth())
    status, added = await _add(
        stack,
        {"domain": "Example.COM", "subdomain": "App", "service_id": service, "environment_id": env},
    )
    assert status == 201, added
    assert added["full_domain"] == "app.example.com"
    assert (added["verification_status"], added["dns_configured"], added["ssl_status"]) == (
        "pending",
        False,
        "none",
    )
    [txt] = [r for r in added["dns_records"] if r["purpose"] == "verification"]
    assert txt["type"] == "TXT" and txt["name"] == "_deployforge-challenge.app.example.com"
    assert len(txt["value"]) >= 32
    # A gateway that knows the edge's address says which record routes the name there.
    edge_aware = await stack.add_gateway(edge_public_addresses=EDGE)
    seen = await _ok(await edge_aware.get(f"/v1/domains/{added['id']}", headers=stack.auth()))
    routing = {"type": "A", "name": "app.example.com", "value": EDGE, "purpose": "routing"}
    assert routing in seen["dns_records"] and routing not in added["dns_records"]

    verify_path = f"/v1/domains/{added['id']}/verify"
    failed = await _ok(await stack.client.post(verify_path, headers=stack.auth()))
    assert failed["verification_status"] == "failed"
    assert failed["verification_error"] == "no TXT record found"

    await dns.set_txt(txt["name"], "somebody-else")
    failed = await _ok(await stack.client.post(verify_path, headers=stack.auth()))
    assert failed["verification_error"] == "the TXT record does not hold this domain's token"

    await dns.set_txt(txt["name"], txt["value"])
    verified = await _ok(await stack.client.post(verify_path, headers=stack.auth()))
    assert (verified["verification_status"], verified["dns_configured"]) == ("verified", False)
    assert verified["addresses"] == ["192.0.2.99"]  # not the edge yet

    await dns.add_a("app.example.com", EDGE)
    pointed = await _ok(await stack.client.post(verify_path, headers=stack.auth()))
    assert (pointed["verification_status"], pointed["dns_configured"]) == ("verified", True)
    assert pointed["addresses"] == [EDGE] and pointed["verified_at"]

    listed = await _ok(
        await stack.client.get(
            "/v1/domains",
            params={"status": "verified", "service_id": service},
            headers=stack.auth(),
        )
    )
    assert [d["id"] for d in listed["items"]] == [added["id"]]
    assert (
        await _ok(
            await stack.client.get(
                "/v1/domains", params={"status": "pending"}, headers=stack.auth()
            )
        )
    )["items"] == []

    got = await receiver.wait_for(lambda r: len(r) >= 4)
    payloads = [verify(hook["secret"], r) for r in got]
    assert [p["type"] for p in payloads] == [
        "domain.added",
        "domain.verification_failed",
        "domain.verification_failed",
        "domain.verified",
    ]
    assert payloads[3]["data"]["full_domain"] == "app.example.com"
    assert all(txt["value"] not in str(p) for p in payloads)


async def test_a_name_is_claimed_once_across_organizations(domains: Stack) -> None:
    stack = domains
    service, env = await _service(stack, stack.auth())
    body = {"domain": "shop.example.org", "service_id": service, "environment_id": env}
    status, first = await _add(stack, body)
    assert status == 201, first
    # The same name in other spellings, here and in another organization: 409.
    status, again = await _add(stack, {**body, "domain": "SHOP.example.org."})
    assert status == 409 and again["error"]["details"]["field"] == "$.domain"
    rival = await stack.outsider()
    rival_service, rival_env = await _service(stack, rival)
    rival_body = {**body, "service_id": rival_service, "environment_id": rival_env}
    status, taken = await _add(stack, rival_body, rival)
    assert status == 409, taken
    # Nor do our ids exist for them.
    for method, path in [
        ("GET", f"/v1/domains/{first['id']}"),
        ("PATCH", f"/v1/domains/{first['id']}"),
        ("POST", f"/v1/domains/{first['id']}/verify"),
        ("DELETE", f"/v1/domains/{first['id']}"),
    ]:
        resp = await stack.client.request(
            method, path, json={} if method == "PATCH" else None, headers=rival
        )
        assert resp.status == 404, (method, path, await resp.text())
    status, hidden = await _add(
        stack, {**rival_body, "domain": "other.example.org", "service_id": service}, rival
    )
    assert status == 404 and hidden["error"]["details"]["field"] == "$.service_id"

    # Removed, the name is free for anyone.
    await _ok(await stack.client.delete(f"/v1/domains/{first['id']}", headers=stack.auth()), 204)
    status, theirs = await _add(stack, rival_body, rival)
    assert status == 201, theirs


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"domain": "192.0.2.1"}, "$.domain"),
        ({"domain": "co.uk"}, "$.domain"),
        ({"domain": "example.com", "subdomain": "*"}, "$.challenge"),
        ({"domain": "example.com", "subdomain": "a..b"}, "$.subdomain"),
        ({"domain": "example.com", "redirect_to": "javascript:alert(1)"}, "$.redirect_to"),
        ({"domain": "example.com", "challenge": "tls-alpn-01"}, "$.challenge"),
        ({"domain": "example.com", "port": 70000}, "$.port"),
    ],
)
async def test_names_nobody_may_claim_are_refused_naming_the_field(
    domains: Stack, body: dict[str, Any], field: str
) -> None:
    service, env = await _service(domains, domains.auth())
    status, refused = await _add(domains, {"service_id": service, "environment_id": env, **body})
    assert status == 422, refused
    assert refused["error"]["details"]["field"] == field


async def test_service_domains_proxy_routes_and_a_replayed_read_model(domains: Stack) -> None:
    stack = domains
    service, env = await _service(stack, stack.auth())
    devflow = await _ok(
        await stack.client.post(
            f"/v1/services/{service}/domains",
            json={"domain": "example.net", "subdomain": "app", "environment_id": env},
            headers=stack.auth(),
        ),
        201,
    )
    assert (devflow["full_domain"], devflow["service_id"]) == ("app.example.net", service)
    route = await _ok(
        await stack.client.post(
            "/v1/proxy/routes",
            json={
                "domain": "api.example.net",
                "service_id": service,
                "environment_id": env,
                "port": 3000,
            },
            headers=stack.auth(),
        ),
        201,
    )
    routes = await _ok(await stack.client.get("/v1/proxy/routes", headers=stack.auth()))
    assert {(r["domain"], r["port"]) for r in routes["items"]} == {
        ("app.example.net", None),
        ("api.example.net", 3000),
    }
    patched = await _ok(
        await stack.client.patch(
            f"/v1/domains/{route['id']}",
            json={"port": 8080, "redirect_https": False},
            headers=stack.auth(),
        )
    )
    assert (patched["port"], patched["redirect_https"]) == (8080, False)
    redirected = await _ok(
        await stack.client.patch(
            f"/v1/domains/{route['id']}",
            json={"redirect_to": "https://example.net/"},
            headers=stack.auth(),
        )
    )
    assert redirected["redirect_to"] == "https://example.net/"
    assert redirected["port"] == 8080  # what a PATCH does not name is kept
    cleared = await _ok(
        await stack.client.patch(
            f"/v1/domains/{route['id']}", json={"redirect_to": None}, headers=stack.auth()
        )
    )
    assert cleared["redirect_to"] is None
    removed = await stack.client.delete(f"/v1/proxy/routes/{route['id']}", headers=stack.auth())
    assert removed.status == 204, await removed.text()
    # Read with the removal's consistency token: the read model has applied it.
    token = {"X-Consistency-Token": removed.headers["X-Consistency-Token"]}
    gone = await stack.client.get(f"/v1/domains/{route['id']}", headers={**stack.auth(), **token})
    assert gone.status == 404, await gone.text()

    query = "SELECT * FROM domains.domains ORDER BY id"
    conn = await asyncpg.connect(stack.suite.database_url)
    try:
        live = [dict(r) for r in await conn.fetch(query)]
        nc = await nats.connect(stack.suite.nats_url)
        try:
            await replay(
                DomainProjection(),
                stack.suite.database_url,
                EventStore(nc.jetstream(), namespace=stack.suite.namespace),
            )
        finally:
            await nc.close()
        assert [dict(r) for r in await conn.fetch(query)] == live
        assert len(live) == 2
    finally:
        await conn.close()
    await asyncio.sleep(0)
