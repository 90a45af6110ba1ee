"""A domain reaches a deployed app through the edge only once it is verified, follows its
redeployments with no failed request, and stops being served when it is removed. Real
git repository, agent, processes, DNS (pebble-challtestsrv) and edge."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.challtestsrv import ChallTestSrv
from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import (  # the fixtures too
    commit_version,
    make_service,
    repo,
    workspace,
)

__all__ = ["repo", "workspace"]  # fixtures, used by name


async def _through(edge: Any, host: str, path: str = "/") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{edge.server.http_port}{path}",
            headers={"Host": host},
            allow_redirects=False,
        ) as resp,
    ):
        return resp.status, await resp.text()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    for _ in range(int(timeout * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never")


async def test_a_verified_domain_serves_the_deployed_app_through_every_redeploy(
    stack: Stack, dns: ChallTestSrv, repo: Path, workspace: Path
) -> None:
    await stack.start(
        "domains", domains_dns_resolver=dns.resolver, edge_public_addresses="127.0.0.1"
    )
    await stack.start_agent(workspace / "agent", drain_seconds=0.5, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, greeting="hello")
    first = await deployer.ended((await deployer.start())["id"])
    assert first["status"] == "succeeded", first
    client, auth = stack.client, stack.auth()
    resp = await client.post(
        "/v1/domains",
        json={
            "domain": "shop.example.com",
            "service_id": deployer.service,
            "environment_id": deployer.env,
        },
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    domain = await resp.json()
    edge = await stack.start_edge()

    # Added, not verified: nothing is routed.
    await asyncio.sleep(0.5)
    assert (await _through(edge, "shop.example.com"))[0] == 404

    [txt] = [r for r in domain["dns_records"] if r["purpose"] == "verification"]
    await dns.set_txt(txt["name"], txt["value"])
    await dns.add_a("shop.example.com", "127.0.0.1")
    resp = await client.post(f"/v1/domains/{domain['id']}/verify", headers=auth)
    assert (await resp.json())["verification_status"] == "verified"

    async def served() -> bool:
        return await _through(edge, "shop.example.com") == (200, "v1 built=True greeting=hello")

    await _eventually(served)

    # A blue-green redeploy under steady traffic through the edge: not one failure.
    commit_version(repo, "v2")
    answers: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def steady() -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                try:
                    async with http.get(
                        f"http://127.0.0.1:{edge.server.http_port}/",
                        headers={"Host": "shop.example.com"},
                    ) as resp:
                        text = await resp.text()
                        (answers if resp.status == 200 else failures).append(text)
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))

    clients = [asyncio.create_task(steady()) for _ in range(4)]
    second = await deployer.ended((await deployer.start())["id"])
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    assert second["status"] == "succeeded", second
    assert failures == []
    assert answers[-1] == "v2 built=True greeting=hello"

    # A second replica, started now, serves the domain as soon as it is ready.
    replica = await stack.start_edge()
    assert await _through(replica, "shop.example.com") == (200, "v2 built=True greeting=hello")

    resp = await client.delete(f"/v1/domains/{domain['id']}", headers=auth)
    assert resp.status == 204, await resp.text()

    async def withdrawn() -> bool:
        return (await _through(edge, "shop.example.com"))[0] == 404

    await _eventually(withdrawn)
