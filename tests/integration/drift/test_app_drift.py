"""Drift of what runs against what was deployed, with a real agent, real processes and a
real git repository: a file edited in the running release is a critical finding, a
stray release directory is unexpected, a variable set after the deployment is "not
applied" (accept refused, names only, never a value), an instance killed and kept down
is missing; remediate deploys again and the next scan resolves all but the stray; an
agent that is down makes the scan name the services it could not read, resolving
nothing; a scan while a deployment runs is skipped with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import _git, commit_version, make_service
from tests.integration.drift.through_the_gateway import scan
from tests.receivers import Receivers

CANARY = "canary-greeting-never-shown"
# The test app, plus a way to keep an instance down: it exits at once while DOWN_FILE exists.
DOWN = """
import os, pathlib, sys
if pathlib.Path(os.environ.get("DOWN_FILE", "/nonexistent")).exists():
    sys.exit(1)
"""


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-test-drift-"))
    try:
        yield path
    finally:
        # The agent here detaches when stopped: nothing it left running outlives the test
        # (each instance leads its own process group).
        for state in (path / "agent" / "instances").glob("*.json"):
            with contextlib.suppress(ValueError, KeyError, OSError):
                os.killpg(int(json.loads(state.read_text())["pid"]), signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)


def _repo(workspace: Path) -> Path:
    repo = workspace / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit_version(repo, "v1")
    (repo / "app.py").write_text(DOWN + (repo / "app.py").read_text())
    _git(repo, "commit", "-q", "-am", "can be kept down")
    return repo


async def _json(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


def _by_type(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["resource_type"]: f for f in found}


async def test_what_runs_against_what_was_deployed(stack: Stack, workspace: Path) -> None:
    await stack.start("drift")
    agent_dir = workspace / "agent"
    agent = await stack.start_agent(
        agent_dir, drain_seconds=0.2, health_timeout_seconds=15, detach_on_stop=True
    )
    deployer = await make_service(stack, _repo(workspace), greeting=CANARY, replicas=2)
    client, auth = stack.client, stack.auth()
    down_file = workspace / "down"
    resp = await client.put(
        f"/v1/services/{deployer.service}/env/DOWN_FILE",
        json={"value": str(down_file)},
        headers=auth,
    )
    assert resp.status in (200, 201), await resp.text()
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded", deployment
    env, service = deployer.env, deployer.service
    address = f"service/{service}/env/{env}"

    clean = await scan(stack, env)
    assert clean["findings"] == [], clean["findings"][0]["differences"]
    assert (clean["status"], clean["services"], clean["drifts_detected"]) == ("completed", 1, 0)
    assert clean["could_not_read"] == []

    # Out of band: a file of the running release edited, a stray release directory,
    # a variable set after the deployment, one instance killed and kept down.
    release = agent_dir / "releases" / service / deployment["release_id"]
    with (release / "app.py").open("a") as edited:
        edited.write("\n# patched by hand on the server\n")
    (agent_dir / "releases" / service / "rel_stray").mkdir()
    resp = await client.put(
        f"/v1/services/{service}/env/FEATURE_FLAG",
        json={"value": "on", "secret": True},
        headers=auth,
    )
    assert resp.status in (200, 201), await resp.text()
    # ... and its run command changed, not deployed since.
    resp = await client.patch(
        f"/v1/services/{service}", json={"run_command": "python app.py --drift"}, headers=auth
    )
    assert resp.status == 200, await resp.text()
    instances = (await _json(await client.get("/v1/instances", headers=auth)))["items"]
    victim = instances[0]
    down_file.write_text("down")
    os.kill(victim["pid"], signal.SIGKILL)
    await asyncio.sleep(1.0)  # the supervisor restarts it: it exits at once

    drifted = await scan(stack, env)
    found = _by_type(drifted["findings"])
    assert set(found) == {"release_file", "release_dir", "env", "instance", "service"}, found
    [command] = found["service"]["differences"]
    assert command == {
        "pointer": "/run_command",
        "expected": ["python", "app.py", "--drift"],
        "actual": ["python", "app.py"],
    }
    edited_file = found["release_file"]
    assert (edited_file["severity"], edited_file["kind"]) == ("critical", "changed")
    [difference] = edited_file["differences"]
    assert difference["pointer"] == "/app.py"
    assert difference["expected"].startswith("sha256:") and difference["actual"].startswith(
        "sha256:"
    )
    assert difference["expected"] != difference["actual"]
    assert found["release_dir"]["kind"] == "unexpected"
    assert found["release_dir"]["address"] == f"{address}/releases/rel_stray"
    [flag] = found["env"]["differences"]
    assert flag["pointer"] == "/FEATURE_FLAG" and flag["actual"] is None
    assert found["instance"]["address"] == f"{address}/instance/{victim['instance_id']}"
    assert (found["instance"]["kind"], found["instance"]["severity"]) == ("missing", "high")
    assert drifted["critical"] == 1
    assert CANARY not in json.dumps(drifted) and '"on"' not in json.dumps(drifted)

    # Accepting a variable not applied is refused: only a deployment applies it.
    resp = await client.post(f"/v1/drift-findings/{found['env']['id']}/accept", headers=auth)
    refused = await _json(resp, 409)
    assert "remediate" in refused["error"]["message"]
    # Nobody's release directory is never deleted by a remediation.
    resp = await client.post(
        f"/v1/drift-findings/{found['release_dir']['id']}/remediate", headers=auth
    )
    await _json(resp, 409)

    # Remediate the edited file: a fresh build of the commit that should run.
    down_file.unlink()
    resp = await client.post(f"/v1/drift-findings/{edited_file['id']}/remediate", headers=auth)
    remediating = await _json(resp, 202)
    redeployment = remediating["remediation_deployment_id"]
    assert redeployment and remediating["last_action"] == "remediate"
    # Pressed twice: one deployment, and the second press says which one is at it.
    resp = await client.post(f"/v1/drift-findings/{edited_file['id']}/remediate", headers=auth)
    assert redeployment in (await _json(resp, 409))["error"]["message"]
    redeployed = await deployer.ended(redeployment)
    assert redeployed["status"] == "succeeded", redeployed
    assert redeployed["commit_hash"] == deployment["commit_hash"]
    assert redeployed["release_id"] != deployment["release_id"]

    after = await scan(stack, env)
    assert after["resolved"] == 4, after
    assert [f["resource_type"] for f in after["findings"]] == ["release_dir"]

    # The agent goes away (its instances stay): the scan says what it could not read,
    # and resolves nothing.
    # (Stopping takes the agent a moment: until it has, it still answers.)
    agent.set()
    for _ in range(40):
        blind = await scan(stack, env)
        if blind["could_not_read"]:
            break
        await asyncio.sleep(0.25)
    assert blind["status"] == "completed"
    assert blind["could_not_read"] == [address]
    assert (blind["resolved"], blind["drifts_detected"]) == (0, 1)
    # Back: a new agent adopts the instances (and stops them when the test ends).
    await stack.start_agent(agent_dir, drain_seconds=0.2, health_timeout_seconds=15)
    rule = {"resource_type": "release_dir", "reason": "kept for a post-mortem"}
    await _json(
        await client.post(f"/v1/environments/{env}/drift-ignore-rules", json=rule, headers=auth),
        201,
    )
    quiet = await scan(stack, env)
    assert (quiet["drifts_detected"], quiet["could_not_read"]) == (0, []), quiet


async def test_a_scan_while_a_deployment_runs_is_skipped(
    stack: Stack, workspace: Path, receivers: Receivers
) -> None:
    await stack.start("drift")
    await stack.start_webhooks()
    receiver = await receivers()
    hook = await stack.client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["drift.*"]}, headers=stack.auth()
    )
    assert hook.status == 201, await hook.text()
    repo = _repo(workspace)
    deployer = await make_service(
        stack, repo, build_command="python -c 'import time; time.sleep(30)'"
    )
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    started = await deployer.start()
    await deployer.wait_status(started["id"], "running")
    skipped = await scan(stack, deployer.env)
    assert skipped["status"] == "skipped"
    assert started["id"] in skipped["reason"]
    # A receiver learns how the scan it was told of ended.
    delivered = await receiver.wait_for(
        lambda rs: any(r.payload.get("type") == "drift.scan_skipped" for r in rs)
    )
    [told] = [r for r in delivered if r.payload["type"] == "drift.scan_skipped"]
    assert told.payload["data"] == {"scan_id": skipped["id"], "reason": skipped["reason"]}
    resp = await stack.client.post(f"/v1/deployments/{started['id']}/cancel", headers=stack.auth())
    assert resp.status in (200, 202), await resp.text()
