"""A real deployment, from git to the stable address, announced to a real receiver."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import commit_version, make_service
from tests.integration.webhooks.conftest import Receivers, create_webhook, verify


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-webhooks-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_a_deployment_is_announced_from_created_to_completed(
    hooks: Stack, receivers: Receivers, workspace: Path
) -> None:
    repo = workspace / "repo"
    repo.mkdir()
    git = shutil.which("git") or "git"
    subprocess.run([git, "init", "-q", "-b", "main", str(repo)], check=True)
    commit = commit_version(repo, "v1")
    receiver = await receivers()
    hook = await create_webhook(hooks, receiver.url, ["deployment.*"])
    everything = await receivers()
    await create_webhook(hooks, everything.url, ["*"])
    await hooks.start_agent(workspace / "agent", drain_seconds=0.5, health_timeout_seconds=15)
    deployer = await make_service(hooks, repo, greeting="do-not-leak")

    deployment = await deployer.ended((await deployer.start(ref="main"))["id"])
    assert deployment["status"] == "succeeded"
    got = await receiver.wait_for(lambda _: bool(receiver.of_type("deployment.completed")))

    payloads = [verify(hook["secret"], r) for r in got]
    types = [p["type"] for p in payloads]
    assert types[0] == "deployment.created"
    for expected in ("deployment.started", "deployment.step_started", "deployment.step_finished"):
        assert expected in types
    completed = next(p for p in payloads if p["type"] == "deployment.completed")
    assert completed["data"]["deployment_id"] == deployment["id"]
    assert completed["data"]["service_id"] == deployer.service
    assert completed["data"]["environment_id"] == deployer.env
    assert completed["data"]["project_id"] == deployment["project_id"]
    assert completed["data"]["status"] == "succeeded"
    assert completed["data"]["commit_hash"] == commit
    assert completed["data"]["duration_seconds"] > 0
    assert completed["data"]["ref"] == "main"
    steps = [p["data"]["step"] for p in payloads if p["type"] == "deployment.step_finished"]
    assert steps[:2] == ["fetch", "build"]
    # Every event was its own delivery.
    assert len({r.webhook_id for r in got}) == len(got)
    # The secret env var was announced by name; its value went nowhere.
    seen = await everything.wait_for(lambda r: bool(everything.of_type("deployment.completed")))
    [env_var] = everything.of_type("service.env_var_set")
    assert env_var.payload["data"] == {"service_id": deployer.service, "key": "GREETING"}
    assert all(b"do-not-leak" not in r.body for r in seen + receiver.requests)
