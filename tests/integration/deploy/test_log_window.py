"""`since` and `until` on deployment and service logs: the lines of a time range."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

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
    path = Path(tempfile.mkdtemp(prefix="deployforge-logs-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _lines(deployer: Deployer, path: str, **params: str) -> list[dict[str, Any]]:
    resp = await deployer.stack.client.get(path, params=params, headers=deployer.stack.auth())
    assert resp.status == 200, await resp.text()
    lines: list[dict[str, Any]] = (await resp.json())["lines"]
    return lines


def _at(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["ts"])


async def test_since_and_until_keep_the_lines_of_a_time_range(
    stack: Stack, workspace: Path
) -> None:
    repo = workspace / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit_version(repo, "v1")
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo)
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded"
    path = f"/v1/deployments/{deployment['id']}/logs"
    every = await _lines(deployer, path)
    assert len(every) >= 4
    middle = every[len(every) // 2]

    since = await _lines(deployer, path, since=middle["ts"])
    until = await _lines(deployer, path, until=middle["ts"])
    assert since == [line for line in every if _at(line) >= _at(middle)]
    assert until == [line for line in every if _at(line) <= _at(middle)]
    assert middle in since and middle in until
    between = await _lines(deployer, path, since=every[1]["ts"], until=every[-2]["ts"])
    assert between == [l for l in every if _at(every[1]) <= _at(l) <= _at(every[-2])]  # noqa: E741
    assert await _lines(deployer, path, since="2999-01-01T00:00:00Z") == []
    assert await _lines(deployer, path, until="2000-01-01T00:00:00+02:00") == []
    assert await _lines(deployer, path, since=every[0]["ts"], tail="2") == every[-2:]

    # The service's log too: what its instance printed after the deployment began.
    service_path = f"/v1/services/{deployer.service}/logs"

    async def printed() -> bool:
        return any("serving v1" in line["line"] for line in await _lines(deployer, service_path))

    await _eventually(printed)
    served = await _lines(deployer, service_path, since=every[0]["ts"])
    assert any("serving v1" in line["line"] for line in served)
    assert await _lines(deployer, service_path, until=every[0]["ts"]) == []


async def test_a_services_log_narrows_to_one_environment(stack: Stack, workspace: Path) -> None:
    repo = workspace / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit_version(repo, "v1")
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo)
    resp = await stack.client.post(
        "/v1/environments", json={"name": "staging"}, headers=stack.auth()
    )
    staging = (await resp.json())["id"]
    for env in (deployer.env, staging):
        deployment = await deployer.ended((await deployer.start(environment_id=env))["id"])
        assert deployment["status"] == "succeeded"
    path = f"/v1/services/{deployer.service}/logs"

    async def both_served() -> bool:
        served = [x for x in await _lines(deployer, path) if "serving v1" in x["line"]]
        return {x["environment_id"] for x in served} == {deployer.env, staging}

    await _eventually(both_served)
    for env in (deployer.env, staging):
        only = await _lines(deployer, path, environment_id=env)
        assert only and all(x["environment_id"] == env for x in only)
        assert any("serving v1" in x["line"] for x in only)
    assert await _lines(deployer, path, environment_id="env_elsewhere") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "$.since"),
        ({"until": "2024-13-01T00:00:00Z"}, "$.until"),
        # Without an offset, a time is a different moment on every machine.
        ({"since": "2024-01-01T00:00:00"}, "$.since"),
        ({"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "$.until"),
        ({"follow": "true", "until": "2024-01-01T00:00:00Z"}, "$.until"),
    ],
)
async def test_a_bad_time_is_refused_naming_the_field(
    stack: Stack, query: dict[str, str], field: str
) -> None:
    client, auth = stack.client, stack.auth()
    env = await (await client.post("/v1/environments", json={"name": "p"}, headers=auth)).json()
    project = await (await client.post("/v1/projects", json={"name": "P"}, headers=auth)).json()
    service = await (
        await client.post(
            "/v1/services",
            json={
                "project_id": project["id"],
                "name": "web",
                "repository_url": "/srv/web",
                "run_command": "python app.py",
            },
            headers=auth,
        )
    ).json()
    deployment = await (
        await client.post(
            f"/v1/services/{service['id']}/deployments",
            json={"environment_id": env["id"]},
            headers=auth,
        )
    ).json()
    for path in (f"/v1/services/{service['id']}/logs", f"/v1/deployments/{deployment['id']}/logs"):
        resp = await client.get(path, params=query, headers=auth)
        assert resp.status == 422, (path, await resp.text())
        error = (await resp.json())["error"]
        assert (error["code"], error["details"]["field"]) == ("VALIDATION_ERROR", field)
