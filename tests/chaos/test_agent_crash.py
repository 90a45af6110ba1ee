"""SIGKILL of an agent mid-deployment: the deployment fails, nothing keeps running."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import _git, commit_version, make_service

SLOW_BUILD = """
import pathlib, subprocess, sys, time
marker = pathlib.Path(sys.argv[1])
# A grandchild too: the whole group must go, not just the build's leader.
subprocess.Popen([sys.executable, "-c",
    "import pathlib, sys, time\\nwhile True: pathlib.Path(sys.argv[1]).touch(); time.sleep(0.1)",
    str(marker) + ".child"])
print("slow build started", flush=True)
while True:
    marker.touch()
    time.sleep(0.1)
"""


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-chaos-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _agent(stack: Stack, work: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        **stack.suite.environ(),
        "DEPLOYFORGE_WORK_DIR": str(work),
        "DEPLOYFORGE_DETACH_ON_STOP": "false",
        "DEPLOYFORGE_LOG_FORMAT": "json",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.deploy.agent",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _touched_again(path: Path, within: float) -> bool:
    path.unlink(missing_ok=True)
    await asyncio.sleep(within)
    return path.exists()


async def test_sigkilled_agent_fails_its_deployment_and_leaves_nothing_running(
    stack: Stack, workspace: Path
) -> None:
    repo = workspace / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit_version(repo, "v1")
    marker = workspace / "building"
    (repo / "slow_build.py").write_text(SLOW_BUILD)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "slow")
    deployer = await make_service(
        stack, repo, build_command=["python", "slow_build.py", str(marker)]
    )
    client, auth = stack.client, stack.auth()
    agent = await _agent(stack, workspace / "agent")
    try:
        deployment = await deployer.start()
        for _ in range(300):
            if marker.exists() and Path(f"{marker}.child").exists():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the build never started")
        agent.send_signal(signal.SIGKILL)
        await agent.wait()

        # The lease expires and the watchdog fails the deployment (~20 s here).
        status = None
        for _ in range(450):
            body = await (
                await client.get(f"/v1/deployments/{deployment['id']}", headers=auth)
            ).json()
            status = body["status"]
            if status == "failed":
                break
            await asyncio.sleep(0.1)
        assert status == "failed", status
        assert "agent" in body["failure_reason"]

        # The next agent on this machine reaps the orphaned build.
        agent = await _agent(stack, workspace / "agent")
        for _ in range(100):
            if not await _touched_again(marker, 0.5) and not await _touched_again(
                Path(f"{marker}.child"), 0.5
            ):
                break
        else:
            raise AssertionError("the orphaned build is still running")
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
            await agent.wait()
