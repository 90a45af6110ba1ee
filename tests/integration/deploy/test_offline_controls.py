"""An agent that was offline when a service was stopped or restarted catches up when back."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import (
    _address,
    _eventually,
    _get_text,
    _instances,
    _instances_are,
    commit_version,
    make_service,
)


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-offline-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_a_stop_requested_while_the_agent_was_away_is_carried_out_when_it_returns(
    stack: Stack, workspace: Path
) -> None:
    import psutil

    repo = workspace / "repo"
    repo.mkdir()
    git = shutil.which("git") or "git"
    subprocess.run([git, "init", "-q", "-b", "main", str(repo)], check=True)
    commit_version(repo, "v1")
    work = workspace / "agent"
    first = await stack.start_agent(work, detach_on_stop=True, health_timeout_seconds=15)
    deployer = await make_service(stack, repo)
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded"
    address = await _address(deployer, deployment["id"])
    [running] = await _instances(deployer)
    first.set()  # the agent goes away; its release keeps serving
    await asyncio.sleep(1)
    assert psutil.pid_exists(running["pid"])

    resp = await stack.client.post(f"/v1/services/{deployer.service}/stop", headers=stack.auth())
    assert resp.status == 202, await resp.text()
    await asyncio.sleep(0.5)
    assert psutil.pid_exists(running["pid"]), "nobody was there to stop it"

    await stack.start_agent(work, detach_on_stop=False, health_timeout_seconds=15)
    await _eventually(lambda: _instances_are(deployer, 0))
    for _ in range(50):
        if not psutil.pid_exists(running["pid"]):
            break
        await asyncio.sleep(0.1)
    assert not psutil.pid_exists(running["pid"])
    async with aiohttp.ClientSession() as http, http.get(address) as resp:
        assert resp.status == 503

    # Caught up, it goes on acting on new requests, once each.
    await stack.client.post(f"/v1/services/{deployer.service}/start", headers=stack.auth())
    await _eventually(lambda: _instances_are(deployer, 1))
    assert (await _get_text(address)).startswith("v1")
