"""Deployments that really run: a git repository, a build, processes, a stable address."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Stack

APP = """
import http.server, os, pathlib
VERSION = pathlib.Path("VERSION").read_text().strip()
BUILT = pathlib.Path("BUILT").exists()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health" and os.environ.get("BREAK_HEALTH"):
            self.send_response(500); self.end_headers(); return
        body = f"{VERSION} built={BUILT} greeting={os.environ.get('GREETING', '')}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
print("serving", VERSION, "on", os.environ["PORT"], flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    git = shutil.which("git") or "git"
    return subprocess.run(
        [git, "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def commit_version(repo: Path, version: str, *, build_ok: bool = True) -> str:
    (repo / "VERSION").write_text(version)
    (repo / "app.py").write_text(APP)
    (repo / "build.py").write_text(
        "import pathlib, sys\nprint('building', pathlib.Path('VERSION').read_text())\n"
        + (
            "pathlib.Path('BUILT').write_text('yes')\n"
            if build_ok
            else "print('compiler error: missing semicolon'); sys.exit(3)\n"
        )
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", version)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-agent-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def repo(workspace: Path) -> Path:
    path = workspace / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    commit_version(path, "v1")
    return path


class Deployer:
    def __init__(self, stack: Stack, service: str, env: str) -> None:
        self.stack, self.service, self.env = stack, service, env

    async def start(self, **body: Any) -> dict[str, Any]:
        resp = await self.stack.client.post(
            f"/v1/services/{self.service}/deployments",
            json={"environment_id": self.env, **body},
            headers=self.stack.auth(),
        )
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def get(self, deployment_id: str) -> dict[str, Any]:
        resp = await self.stack.client.get(
            f"/v1/deployments/{deployment_id}", headers=self.stack.auth()
        )
        return await resp.json()

    async def ended(self, deployment_id: str, timeout: float = 60) -> dict[str, Any]:
        for _ in range(int(timeout * 10)):
            deployment = await self.get(deployment_id)
            if deployment["status"] in ("succeeded", "failed", "cancelled"):
                return deployment
            await asyncio.sleep(0.1)
        steps = await self.steps(deployment_id)
        raise AssertionError(f"{deployment_id} still {deployment['status']} after {steps}")

    async def wait_status(self, deployment_id: str, status: str, timeout: float = 60) -> None:
        for _ in range(int(timeout * 10)):
            if (await self.get(deployment_id))["status"] == status:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{deployment_id} never {status}")

    async def steps(self, deployment_id: str) -> list[tuple[str, str]]:
        resp = await self.stack.client.get(
            f"/v1/deployments/{deployment_id}/steps", headers=self.stack.auth()
        )
        return [(s["name"], s["state"]) for s in await resp.json()]


async def make_service(
    stack: Stack, repo: Path, *, greeting: str | None = None, **fields: Any
) -> Deployer:
    """An environment, a project and a service deploying `repo`; `fields` override the
    service's (build_command, run_command...); `greeting` sets a secret env var."""
    client, auth = stack.client, stack.auth()
    env = await (await client.post("/v1/environments", json={"name": "prod"}, headers=auth)).json()
    project = await (await client.post("/v1/projects", json={"name": "Shop"}, headers=auth)).json()
    body = {
        "project_id": project["id"],
        "name": "web",
        "repository_url": f"file://{repo}",
        "build_command": "python build.py",
        "run_command": "python app.py",
        "health_check_path": "/health",
        **fields,
    }
    resp = await client.post("/v1/services", json=body, headers=auth)
    assert resp.status == 201, await resp.text()
    service = await resp.json()
    if greeting is not None:
        await client.put(
            f"/v1/services/{service['id']}/env/GREETING",
            json={"value": greeting, "secret": True},
            headers=auth,
        )
    return Deployer(stack, service["id"], env["id"])


@pytest.fixture
async def deployer(stack: Stack, repo: Path, workspace: Path) -> AsyncIterator[Deployer]:
    await stack.start_agent(workspace / "agent", drain_seconds=0.5, health_timeout_seconds=15)
    yield await make_service(stack, repo, greeting="hello")


async def _get_text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_a_git_repository_is_deployed_and_served_at_its_stable_address(
    deployer: Deployer, repo: Path
) -> None:
    commit = _git(repo, "rev-parse", "HEAD")
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded", deployment
    assert deployment["commit_hash"] == commit
    assert deployment["progress"] == 100
    assert await deployer.steps(deployment["id"]) == [
        ("fetch", "success"),
        ("build", "success"),
        ("start", "success"),
        ("health_check", "success"),
        ("switch", "success"),
        ("cleanup", "success"),
    ]
    address = await _address(deployer, deployment["id"])
    assert await _get_text(address) == "v1 built=True greeting=hello"
    resp = await deployer.stack.client.get(
        f"/v1/services/{deployer.service}/instances", headers=deployer.stack.auth()
    )
    [instance] = await resp.json()
    assert instance["address"] == address and instance["release_id"] == deployment["release_id"]

    async def printed() -> bool:
        resp = await deployer.stack.client.get(
            f"/v1/services/{deployer.service}/logs", headers=deployer.stack.auth()
        )
        return any(line["line"].startswith("serving v1") for line in (await resp.json())["lines"])

    await _eventually(printed)
    assert instance["pid"] > 0 and instance["memory_rss"] > 0 and instance["restarts"] == 0
    logs = await deployer.stack.client.get(
        f"/v1/deployments/{deployment['id']}/logs", headers=deployer.stack.auth()
    )
    if logs.status == 200:  # the logs route may not be registered in this build
        assert "building v1" in await logs.text()


async def _address(deployer: Deployer, deployment_id: str) -> str:
    events = await deployer.stack.client.get(
        f"/v1/deployments/{deployment_id}", headers=deployer.stack.auth()
    )
    body = await events.json()
    address = body.get("address")
    assert address, body
    return str(address)


async def test_blue_green_redeploy_under_steady_requests_fails_none(
    deployer: Deployer, repo: Path
) -> None:
    first = await deployer.ended((await deployer.start())["id"])
    address = await _address(deployer, first["id"])
    commit_version(repo, "v2")
    failures: list[str] = []
    answers: list[str] = []
    stop = asyncio.Event()

    async def steady() -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                try:
                    async with http.get(address) as resp:
                        text = await resp.text()
                        (answers if resp.status == 200 else failures).append(text)
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))

    clients = [asyncio.create_task(steady()) for _ in range(8)]
    second = await deployer.ended((await deployer.start())["id"])
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    assert second["status"] == "succeeded"
    assert failures == []
    assert answers[0].startswith("v1") and answers[-1].startswith("v2")


async def test_rollback_serves_the_previous_release_without_building(
    deployer: Deployer, repo: Path
) -> None:
    first = await deployer.ended((await deployer.start())["id"])
    commit_version(repo, "v2")
    second = await deployer.ended((await deployer.start())["id"])
    address = await _address(deployer, second["id"])
    assert (await _get_text(address)).startswith("v2")
    resp = await deployer.stack.client.post(
        f"/v1/deployments/{second['id']}/rollback", headers=deployer.stack.auth()
    )
    assert resp.status == 201, await resp.text()
    rolled = await deployer.ended((await resp.json())["id"])
    assert rolled["status"] == "succeeded"
    assert rolled["release_id"] == first["release_id"]
    assert "build" not in dict(await deployer.steps(rolled["id"]))
    assert (await _get_text(address)).startswith("v1")
    await deployer.wait_status(second["id"], "rolled_back", timeout=10)


async def test_a_failing_build_ends_failed_and_the_old_release_keeps_serving(
    deployer: Deployer, repo: Path
) -> None:
    good = await deployer.ended((await deployer.start())["id"])
    address = await _address(deployer, good["id"])
    commit_version(repo, "v2", build_ok=False)
    bad = await deployer.ended((await deployer.start())["id"])
    assert bad["status"] == "failed"
    assert "exited with 3" in bad["failure_reason"]
    assert ("build", "failure") in await deployer.steps(bad["id"])
    assert (await _get_text(address)).startswith("v1")


async def test_a_failing_health_check_keeps_the_old_release(deployer: Deployer, repo: Path) -> None:
    good = await deployer.ended((await deployer.start())["id"])
    address = await _address(deployer, good["id"])
    await deployer.stack.client.put(
        f"/v1/services/{deployer.service}/env/BREAK_HEALTH",
        json={"value": "1"},
        headers=deployer.stack.auth(),
    )
    commit_version(repo, "v2")
    bad = await deployer.ended((await deployer.start())["id"], timeout=90)
    assert bad["status"] == "failed"
    assert ("health_check", "failure") in await deployer.steps(bad["id"])
    assert (await _get_text(address)).startswith("v1")


async def test_cancel_during_a_long_build_kills_it(
    deployer: Deployer, repo: Path, workspace: Path
) -> None:
    marker = workspace / "build-still-running"
    (repo / "build.py").write_text(
        "import time, pathlib\nprint('long build', flush=True)\n"
        f"for _ in range(600):\n    pathlib.Path({str(marker)!r}).touch(); time.sleep(0.1)\n"
    )
    _git(repo, "commit", "-qam", "slow build")
    deployment = await deployer.start()
    await deployer.wait_status(deployment["id"], "running")
    for _ in range(100):
        if marker.exists():
            break
        await asyncio.sleep(0.1)
    resp = await deployer.stack.client.post(
        f"/v1/deployments/{deployment['id']}/cancel", headers=deployer.stack.auth()
    )
    assert resp.status == 200
    await asyncio.sleep(5)  # the promise: the build's process group is gone within 5 s
    marker.unlink()
    await asyncio.sleep(0.5)
    assert not marker.exists(), "the build kept running after the cancel"
    assert (await deployer.get(deployment["id"]))["status"] == "cancelled"


def _instances_under(work: Path) -> set[int]:
    """Pids of the app processes running from releases in an agent's work directory."""
    import psutil

    found = set()
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline, cwd = process.info["cmdline"] or [], process.info["cwd"] or ""
        if cmdline[-1:] == ["app.py"] and cwd.startswith(str(work)):
            found.add(process.pid)
    return found


async def test_a_restarted_agent_adopts_the_running_release(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    import psutil

    work = workspace / "adopting-agent"
    stop_first = await stack.start_agent(work, detach_on_stop=True, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, greeting="adopted")
    deployment = await deployer.ended((await deployer.start())["id"])
    address = await _address(deployer, deployment["id"])
    pids_before = _instances_under(work)
    stop_first.set()
    await asyncio.sleep(1)
    # The stable address lives in the agent: it answers again once one is back.
    stop_second = await stack.start_agent(work, detach_on_stop=False)
    try:
        assert (await _get_text(address)) == "v1 built=True greeting=adopted"
        pids_after = _instances_under(work)
        assert pids_before & pids_after, "the release was restarted instead of adopted"
        # Adopted instances are supervised: killed, they come back (env included).
        [adopted] = pids_before & pids_after
        psutil.Process(adopted).kill()
        for _ in range(100):
            try:
                if (await _get_text(address)) == "v1 built=True greeting=adopted":
                    break
            except (AssertionError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the adopted instance was not restarted")
    finally:
        stop_second.set()


REPORTING_BUILD = """
import json, os, pathlib, urllib.request
token = os.environ["DEPLOYFORGE_DEPLOYMENT_TOKEN"]
pathlib.Path(os.environ["TOKEN_FILE"]).write_text(token)
deployment = os.environ["DEPLOYFORGE_DEPLOYMENT_ID"]
url = f"{os.environ['DEPLOYFORGE_API_URL']}/v1/deployments/{deployment}/steps"
for state in ("running", "success"):
    body = json.dumps({"name": "migrate", "state": state, "message": "2 migrations"}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "X-API-Key": token, "Content-Type": "application/json"})
    print(urllib.request.urlopen(request).status)
"""


async def test_build_scripts_report_steps_with_their_deployment_token(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    api = str(stack.client.make_url("")).rstrip("/")
    await stack.start_agent(workspace / "agent", api_url=api, drain_seconds=0.2)
    (repo / "report.py").write_text(REPORTING_BUILD)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "reporting build")
    token_file = workspace / "token"
    deployer = await make_service(stack, repo, build_command="python report.py")
    client, auth = stack.client, stack.auth()
    await client.put(
        f"/v1/services/{deployer.service}/env/TOKEN_FILE",
        json={"value": str(token_file)},
        headers=auth,
    )
    first = await deployer.ended((await deployer.start())["id"])
    assert first["status"] == "succeeded", first
    steps = dict(await deployer.steps(first["id"]))
    assert steps["migrate"] == "success"
    token = token_file.read_text()
    assert token.startswith("dfd_")
    # The token reaches its own deployment only, and reports nothing once it ended.
    second = await deployer.ended((await deployer.start())["id"])
    other = await client.post(
        f"/v1/deployments/{second['id']}/steps",
        json={"name": "x", "state": "running"},
        headers={"X-API-Key": token},
    )
    assert other.status == 404
    key = {"X-API-Key": token}
    for method, path in [
        ("GET", f"/v1/services/{deployer.service}"),
        ("POST", f"/v1/services/{deployer.service}/restart"),
        ("POST", f"/v1/services/{deployer.service}/deployments"),
        ("GET", "/v1/deployments"),
        ("GET", "/v1/environments"),
        ("GET", f"/v1/environments/{deployer.env}"),
    ]:
        body = {"environment_id": deployer.env} if method == "POST" else None
        resp = await client.request(method, path, headers=key, json=body)
        assert resp.status == 404, (method, path, resp.status)
    assert (await client.get(f"/v1/deployments/{first['id']}", headers=key)).status == 200
    late = await client.post(
        f"/v1/deployments/{first['id']}/steps",
        json={"name": "x", "state": "running"},
        headers={"X-API-Key": token},
    )
    assert late.status == 409


async def _instances(deployer: Deployer) -> list[dict[str, Any]]:
    resp = await deployer.stack.client.get(
        f"/v1/services/{deployer.service}/instances", headers=deployer.stack.auth()
    )
    result: list[dict[str, Any]] = await resp.json()
    return result


async def _eventually(check: Any, timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never came true")


async def test_stop_start_and_restart_a_running_service(deployer: Deployer) -> None:
    deployment = await deployer.ended((await deployer.start())["id"])
    address = await _address(deployer, deployment["id"])
    [before] = await _instances(deployer)
    client, auth = deployer.stack.client, deployer.stack.auth()

    async def status_of(url: str) -> int:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status

    health = await (
        await client.get(f"/v1/services/{deployer.service}/health", headers=auth)
    ).json()
    assert (health["status"], health["score"]) == ("healthy", 100)

    async def probed() -> bool:
        resp = await client.get(
            f"/v1/services/{deployer.service}/health",
            params={"environment_id": deployer.env},
            headers=auth,
        )
        [env] = (await resp.json())["environments"]
        checks = env["checks"]
        return len(checks) == 1 and checks[0]["ok"] is True and checks[0]["status_code"] == 200

    await _eventually(probed)
    elsewhere = await client.get(
        f"/v1/services/{deployer.service}/health",
        params={"environment_id": "env_elsewhere"},
        headers=auth,
    )
    assert (await elsewhere.json())["environments"] == []
    resp = await client.post(f"/v1/services/{deployer.service}/stop", headers=auth)
    assert resp.status == 202
    await _eventually(lambda: _instances_are(deployer, 0))
    assert await status_of(address) == 503
    health = await (
        await client.get(f"/v1/services/{deployer.service}/health", headers=auth)
    ).json()
    assert (health["status"], health["score"]) == ("down", 0)

    await client.post(f"/v1/services/{deployer.service}/start", headers=auth)
    await _eventually(lambda: _instances_are(deployer, 1))
    assert (await _get_text(address)).startswith("v1")
    [started] = await _instances(deployer)
    assert started["pid"] != before["pid"]

    await client.post(
        f"/v1/services/{deployer.service}/restart",
        json={"environment_id": deployer.env},
        headers=auth,
    )

    async def replaced() -> bool:
        now = await _instances(deployer)
        return len(now) == 1 and now[0]["pid"] != started["pid"]

    await _eventually(replaced)
    assert (await _get_text(address)).startswith("v1")


async def _instances_are(deployer: Deployer, count: int) -> bool:
    return len(await _instances(deployer)) == count


async def test_a_deployforge_yml_in_the_repository_says_how_to_build_and_run(
    deployer: Deployer, repo: Path
) -> None:
    (repo / "start.py").write_text(
        "import os, runpy\nos.environ['GREETING'] = 'from-yml'\nrunpy.run_path('app.py')\n"
    )
    (repo / "deployforge.yml").write_text(
        "build_command: python build.py\n"
        "run_command: [python, start.py]\n"
        "health_check_path: /health\n"
        "env:\n  GREETING: overridden-by-the-service\n"
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "manifest")
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded", deployment
    address = await _address(deployer, deployment["id"])
    # start.py (the manifest's run command) ran; it set its own greeting.
    assert await _get_text(address) == "v1 built=True greeting=from-yml"

    (repo / "deployforge.yml").write_text("replicas: many\n")
    _git(repo, "commit", "-qam", "broken manifest")
    broken = await deployer.ended((await deployer.start())["id"])
    assert broken["status"] == "failed"
    assert "$.replicas" in broken["failure_reason"]
    assert (await _get_text(address)).endswith("greeting=from-yml")


async def test_a_pipeline_run_is_a_deployment_of_its_steps(
    deployer: Deployer, repo: Path, workspace: Path
) -> None:
    out = workspace / "pipeline-out"
    (repo / "check.py").write_text(
        "import os, pathlib, sys\n"
        f"pathlib.Path({str(out)!r}).write_text(os.environ['PARAM_SKIP_TESTS'] + ' '"
        " + os.environ['PARAM_REGION'])\n"
        "sys.exit(int(os.environ.get('PARAM_FAIL', '0')))\n"
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "checks")
    client, auth = deployer.stack.client, deployer.stack.auth()
    resp = await client.post(
        f"/v1/services/{deployer.service}/pipelines",
        json={
            "name": "release",
            "steps": [
                {"name": "unit-tests", "command": "python check.py"},
                {"name": "migrate", "command": ["python", "-c", "pass"]},
            ],
        },
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    pipeline = await resp.json()
    env_name = (await (await client.get(f"/v1/environments/{deployer.env}", headers=auth)).json())[
        "name"
    ]
    # The platform API's shape: the environment by name, parameters of any scalar type.
    run = await client.post(
        f"/v1/pipelines/{pipeline['id']}/run",
        json={
            "branch": "main",
            "environment": env_name,
            "parameters": {"skip_tests": False, "region": "eu"},
        },
        headers=auth,
    )
    assert run.status == 201, await run.text()
    deployment = await deployer.ended((await run.json())["id"])
    assert deployment["status"] == "succeeded", deployment
    names = [name for name, _ in await deployer.steps(deployment["id"])]
    assert names == [
        "fetch",
        "build",
        "unit-tests",
        "migrate",
        "start",
        "health_check",
        "switch",
        "cleanup",
    ]
    assert out.read_text() == "false eu"

    failing = await client.post(
        f"/v1/pipelines/{pipeline['id']}/run",
        json={
            "environment_id": deployer.env,
            "parameters": {"skip_tests": True, "region": "us", "fail": 2},
        },
        headers=auth,
    )
    failed = await deployer.ended((await failing.json())["id"])
    assert failed["status"] == "failed"
    assert ("unit-tests", "failure") in await deployer.steps(failed["id"])
    listed = await (await client.get("/v1/pipelines", headers=auth)).json()
    assert [p["id"] for p in listed["items"]] == [pipeline["id"]]


async def test_following_a_service_log_streams_new_instances_output(
    deployer: Deployer,
) -> None:
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded"
    client, auth = deployer.stack.client, deployer.stack.auth()
    [first] = await _instances(deployer)
    resp = await client.get(
        f"/v1/services/{deployer.service}/logs?follow=true&tail=10", headers=auth
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")

    async def until(text: str) -> None:
        async with asyncio.timeout(30):
            while True:
                raw = await resp.content.readline()
                if raw.startswith(b"data:") and text in raw.decode():
                    return

    await until(f"on {first['port']}")  # the tail: the first instance's greeting
    await client.post(f"/v1/services/{deployer.service}/restart", headers=auth)
    await _eventually(lambda: _instances_replaced(deployer, first["pid"]))
    [second] = await _instances(deployer)
    await until(f"on {second['port']}")  # live: the new instance's greeting
    resp.close()


async def _instances_replaced(deployer: Deployer, pid: int) -> bool:
    now = await _instances(deployer)
    return len(now) == 1 and now[0]["pid"] != pid
