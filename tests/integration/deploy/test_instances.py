"""Instances by id: listed, read, stopped, started, restarted, removed, and their logs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import (
    Deployer,
    _eventually,
    _git,
    commit_version,
    make_service,
)


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-instances-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def deployed(stack: Stack, workspace: Path) -> AsyncIterator[tuple[Deployer, str]]:
    """A service of two instances, deployed; and its stable address."""
    repo = workspace / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit_version(repo, "v1")
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, replicas=2)
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded", deployment
    yield deployer, deployment["address"]


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        await resp.read()
        return resp.status


async def _json(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_instances_are_listed_by_id_and_paged(deployed: tuple[Deployer, str]) -> None:
    deployer, _ = deployed
    client, auth = deployer.stack.client, deployer.stack.auth()
    listed = await _json(await client.get("/v1/instances", headers=auth))
    assert len(listed["items"]) == 2 and listed["next_cursor"] is None
    assert {i["service_id"] for i in listed["items"]} == {deployer.service}
    assert {i["status"] for i in listed["items"]} == {"running"}
    first = await _json(await client.get("/v1/instances?limit=1", headers=auth))
    rest = await _json(
        await client.get(
            "/v1/instances", params={"limit": "1", "cursor": first["next_cursor"]}, headers=auth
        )
    )
    assert first["items"] + rest["items"] == listed["items"] and rest["next_cursor"] is None
    by_org = await _json(
        await client.get(
            f"/v1/organizations/{deployer.stack.org_id}/instances",
            params={"service_id": deployer.service, "environment_id": deployer.env},
            headers=auth,
        )
    )
    assert by_org["items"] == listed["items"]
    elsewhere = await client.get("/v1/instances?environment_id=env_other", headers=auth)
    assert (await _json(elsewhere))["items"] == []
    one = listed["items"][0]
    got = await _json(await client.get(f"/v1/instances/{one['instance_id']}", headers=auth))
    stable = ("instance_id", "service_id", "environment_id", "release_id", "pid", "port", "address")
    assert {k: got[k] for k in stable} == {k: one[k] for k in stable}
    for bad in ("inst_missing", "a.b", "*", ">"):
        resp = await client.get(f"/v1/instances/{bad}", headers=auth)
        assert resp.status == 404, bad
        assert (await resp.json())["error"]["code"] == "RESOURCE_NOT_FOUND"
    malformed = await client.get("/v1/instances?cursor=%%%", headers=auth)
    assert malformed.status == 422
    assert (await malformed.json())["error"]["details"]["field"] == "cursor"


async def _instance(deployer: Deployer, instance_id: str) -> dict[str, Any] | None:
    resp = await deployer.stack.client.get(
        f"/v1/instances/{instance_id}", headers=deployer.stack.auth()
    )
    if resp.status == 404:
        return None
    return await _json(resp)


async def test_one_instance_is_stopped_started_restarted_and_removed(
    deployed: tuple[Deployer, str],
) -> None:
    deployer, address = deployed
    client, auth = deployer.stack.client, deployer.stack.auth()
    a, b = (await _json(await client.get("/v1/instances", headers=auth)))["items"]

    async def becomes(instance_id: str, status: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def check() -> bool:
            found.update(await _instance(deployer, instance_id) or {})
            return found.get("status") == status

        await _eventually(check)
        return found

    # Stopping one: the other keeps the address answering.
    resp = await client.post(f"/v1/instances/{a['instance_id']}/stop", headers=auth)
    assert (await _json(resp, 202))["action"] == "stop"
    stopped = await becomes(a["instance_id"], "stopped")
    assert stopped["pid"] == 0
    assert await _status(address) == 200
    health = await _json(await client.get(f"/v1/services/{deployer.service}/health", headers=auth))
    assert (health["status"], health["environments"][0]["running"]) == ("degraded", 1)

    # Starting it again: a new process on a fresh port, answering there.
    await _json(await client.post(f"/v1/instances/{a['instance_id']}/start", headers=auth), 202)
    started = await becomes(a["instance_id"], "running")
    assert started["pid"] not in (0, a["pid"])
    assert await _status(f"http://127.0.0.1:{started['port']}/") == 200

    # Its own log: only its lines, from both of its runs.
    logs = await _json(await client.get(f"/v1/instances/{a['instance_id']}/logs", headers=auth))
    assert logs["instance_id"] == a["instance_id"]
    assert {line["step"] for line in logs["lines"]} == {a["instance_id"]}
    printed = [line["line"] for line in logs["lines"]]
    assert f"serving v1 on {a['port']}" in printed
    assert f"serving v1 on {started['port']}" in printed

    # Restarting the other: a new process.
    await _json(await client.post(f"/v1/instances/{b['instance_id']}/restart", headers=auth), 202)

    async def restarted() -> bool:
        now = await _instance(deployer, b["instance_id"])
        return now is not None and now["status"] == "running" and now["pid"] != b["pid"]

    await _eventually(restarted)
    assert await _status(address) == 200

    # Removing it: stopped and forgotten; the first one serves alone.
    resp = await client.delete(f"/v1/instances/{b['instance_id']}", headers=auth)
    assert (await _json(resp, 202))["action"] == "remove"

    async def gone() -> bool:
        return await _instance(deployer, b["instance_id"]) is None

    await _eventually(gone)
    listed = await _json(await client.get("/v1/instances", headers=auth))
    assert [i["instance_id"] for i in listed["items"]] == [a["instance_id"]]
    assert await _status(address) == 200

    # The last one stopped: the address answers 503 until it is started again.
    await client.post(f"/v1/instances/{a['instance_id']}/stop", headers=auth)
    await becomes(a["instance_id"], "stopped")
    assert await _status(address) == 503
    await client.post(f"/v1/instances/{a['instance_id']}/start", headers=auth)
    await becomes(a["instance_id"], "running")
    assert await _status(address) == 200


async def test_another_organizations_instances_answer_404(
    deployed: tuple[Deployer, str],
) -> None:
    deployer, _ = deployed
    stack = deployer.stack
    client = stack.client
    [instance, _] = (await _json(await client.get("/v1/instances", headers=stack.auth())))["items"]
    await _json(
        await client.post(
            "/v1/users",
            json={"email": "rival@example.com", "password": "s3cret-pass", "name": "Rival"},
            headers=stack.auth(),
        ),
        201,
    )
    rival = await stack.login("rival@example.com", "s3cret-pass")
    rival_auth = stack.auth(rival["access_token"])
    rival_org = await _json(
        await client.post("/v1/organizations", json={"name": "Rival Inc"}, headers=rival_auth), 201
    )
    me = await _json(await client.get("/v1/users/me", headers=rival_auth))
    await client.delete(
        f"/v1/organizations/{stack.org_id}/members/{me['id']}", headers=stack.auth()
    )
    login = await client.post(
        "/v1/auth/login",
        json={
            "email": "rival@example.com",
            "password": "s3cret-pass",
            "organization_id": rival_org["id"],
        },
    )
    headers = stack.auth((await _json(login))["access_token"])
    # And a token of another service of the same organization.
    project = await _json(
        await client.post("/v1/projects", json={"name": "Other"}, headers=stack.auth()), 201
    )
    other = await _json(
        await client.post(
            "/v1/services",
            json={
                "project_id": project["id"],
                "name": "other",
                "repository_url": "/srv/other",
                "run_command": "python app.py",
            },
            headers=stack.auth(),
        ),
        201,
    )
    token = await _json(
        await client.post(
            f"/v1/services/{other['id']}/tokens", json={"name": "ci"}, headers=stack.auth()
        ),
        201,
    )
    instance_id = instance["instance_id"]
    for who in (headers, {"X-API-Key": token["token"]}):
        for method, path in [
            ("GET", f"/v1/instances/{instance_id}"),
            ("GET", f"/v1/instances/{instance_id}/logs"),
            ("GET", f"/v1/instances/{instance_id}/logs?follow=true"),
            ("POST", f"/v1/instances/{instance_id}/start"),
            ("POST", f"/v1/instances/{instance_id}/stop"),
            ("POST", f"/v1/instances/{instance_id}/restart"),
            ("DELETE", f"/v1/instances/{instance_id}"),
        ]:
            resp = await client.request(method, path, headers=who)
            assert resp.status == 404, (method, path, resp.status)
        assert (await _json(await client.get("/v1/instances", headers=who)))["items"] == []
    resp = await client.get(f"/v1/organizations/{stack.org_id}/instances", headers=headers)
    assert resp.status == 404
    # Nothing was stopped by any of it.
    still = await _json(await client.get(f"/v1/instances/{instance_id}", headers=stack.auth()))
    assert still["status"] == "running" and still["pid"] == instance["pid"]
