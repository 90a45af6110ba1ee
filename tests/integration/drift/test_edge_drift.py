"""What the edge routes against the domains context, with a real git repository, agent,
processes, DNS (pebble-challtestsrv) and edge: a verified domain routed as declared is
no finding; a route rewritten out of band in the edge bucket is a `changed` route
(remediate and accept refused, naming what does put it right); put back, the next
scan resolves it; an edge that is down makes the scan name the domains it could not
read, resolving nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import nats

from services.edge import table
from tests.challtestsrv import ChallTestSrv
from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import (  # the fixtures too
    make_service,
    repo,
    workspace,
)
from tests.integration.drift.through_the_gateway import scan

__all__ = ["repo", "workspace"]  # fixtures, used by name


async def _eventually(check: Any, timeout: float = 20) -> None:
    for _ in range(int(timeout * 10)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never")


def _routes(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in found if f["resource_type"] in ("route", "certificate")]


async def test_what_the_edge_routes_against_the_domains_context(
    stack: Stack, dns: ChallTestSrv, repo: Path, workspace: Path
) -> None:
    await stack.start(
        "domains", domains_dns_resolver=dns.resolver, edge_public_addresses="127.0.0.1"
    )
    await stack.start("drift")
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, greeting="hello")
    deployed = await deployer.ended((await deployer.start())["id"])
    assert deployed["status"] == "succeeded", deployed
    client, auth = stack.client, stack.auth()
    resp = await client.post(
        "/v1/domains",
        json={
            "domain": "shop.example.com",
            "service_id": deployer.service,
            "environment_id": deployer.env,
            "ssl_enabled": False,
        },
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    domain = await resp.json()
    edge = await stack.start_edge()
    [txt] = [r for r in domain["dns_records"] if r["purpose"] == "verification"]
    await dns.set_txt(txt["name"], txt["value"])
    await dns.add_a("shop.example.com", "127.0.0.1")
    resp = await client.post(f"/v1/domains/{domain['id']}/verify", headers=auth)
    assert (await resp.json())["verification_status"] == "verified"
    await _eventually(lambda: domain["id"] in edge.state.routes)

    clean = await scan(stack, deployer.env)
    assert clean["status"] == "completed" and _routes(clean["findings"]) == [], clean
    assert clean["could_not_read"] == []

    # Out of band: someone with access to NATS rewrites the route in the edge bucket.
    declared = await _hijack(stack, domain["id"], edge)
    drifted = await scan(stack, deployer.env)
    [route] = _routes(drifted["findings"])
    assert route["address"] == f"domain/{domain['id']}/edge/{edge.replica_id}"
    assert (route["kind"], route["severity"]) == ("changed", "high")
    [difference] = route["differences"]
    assert difference == {
        "pointer": "/service_id",
        "expected": deployer.service,
        "actual": "svc_elsewhere",
    }
    for action in ("remediate", "accept"):
        resp = await client.post(f"/v1/drift-findings/{route['id']}/{action}", headers=auth)
        assert resp.status == 409, action
        assert "restart the replica" in (await resp.json())["error"]["message"]

    # Put back as the domains context wrote it: the next scan resolves the finding.
    await _put_route(stack, declared)
    await _eventually(lambda: edge.state.routes[domain["id"]].service_id == deployer.service)
    after = await scan(stack, deployer.env)
    assert after["resolved"] == 1 and _routes(after["findings"]) == [], after

    # Hijacked again, then the edge goes down: the scan says what it could not read and
    # leaves the finding standing.
    await _hijack(stack, domain["id"], edge)
    standing = _routes((await scan(stack, deployer.env))["findings"])
    assert len(standing) == 1
    await stack.stop_edge(edge)
    blind = await scan(stack, deployer.env)
    assert blind["could_not_read"] == [f"domain/{domain['id']}"]
    assert blind["resolved"] == 0
    assert [f["id"] for f in _routes(blind["findings"])] == [standing[0]["id"]]


async def _put_route(stack: Stack, route: table.Route) -> None:
    nc = await nats.connect(stack.suite.nats_url)
    try:
        kv = await table.bucket(nc.jetstream(), stack.suite.namespace)
        await kv.put(table.route_key(route.domain_id), table.encode(route))
    finally:
        await nc.close()


async def _hijack(stack: Stack, domain_id: str, edge: Any) -> table.Route:
    """The domain's route in the edge bucket sent to another service; the route it was."""
    declared = edge.state.routes[domain_id]
    await _put_route(stack, msgspec.structs.replace(declared, service_id="svc_elsewhere"))
    await _eventually(lambda: edge.state.routes[domain_id].service_id == "svc_elsewhere")
    return declared
