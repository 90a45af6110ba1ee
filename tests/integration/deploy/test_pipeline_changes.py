"""PATCH /v1/pipelines/{id} and a pipeline's runs: what the next run does, and its history."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import _git, commit_version, make_service


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="deployforge-pipelines-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _json(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_a_changed_pipeline_runs_its_new_steps_and_lists_its_runs(
    stack: Stack, workspace: Path
) -> None:
    repo = workspace / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    commit_version(repo, "v1")
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo)
    client, auth = stack.client, stack.auth()
    pipeline = await _json(
        await client.post(
            f"/v1/services/{deployer.service}/pipelines",
            json={"name": "release", "steps": [{"name": "old-step", "command": "python -c 1"}]},
            headers=auth,
        ),
        201,
    )
    path = f"/v1/pipelines/{pipeline['id']}"
    changed = await _json(
        await client.patch(
            path,
            json={
                "name": "ship",
                "steps": [
                    {"name": "lint", "command": ["python", "-c", "print('linted')"]},
                    {"name": "smoke", "command": "python -c 2"},
                ],
            },
            headers=auth,
        )
    )
    assert changed["name"] == "ship"
    assert [s["name"] for s in changed["steps"]] == ["lint", "smoke"]
    assert changed["steps"][0]["command"] == ["python", "-c", "print('linted')"]
    assert changed["updated_at"] > changed["created_at"]
    assert await _json(await client.get(path, headers=auth)) == changed
    # Renaming alone keeps the steps.
    renamed = await _json(await client.patch(path, json={"name": "ship-it"}, headers=auth))
    assert (renamed["name"], renamed["steps"]) == ("ship-it", changed["steps"])

    plain = await deployer.start()
    run = await _json(
        await client.post(f"{path}/run", json={"environment_id": deployer.env}, headers=auth), 201
    )
    assert run["pipeline_id"] == pipeline["id"]
    ended = await deployer.ended(run["id"])
    assert ended["status"] == "succeeded", ended
    steps = [name for name, _ in await deployer.steps(run["id"])]
    assert steps == [
        "fetch",
        "build",
        "lint",
        "smoke",
        "start",
        "health_check",
        "switch",
        "cleanup",
    ]
    logs = await _json(await client.get(f"/v1/deployments/{run['id']}/logs", headers=auth))
    assert any(line["line"] == "linted" for line in logs["lines"])

    second = await _json(
        await client.post(f"{path}/run", json={"environment_id": deployer.env}, headers=auth), 201
    )
    runs = await _json(await client.get(f"{path}/runs", headers=auth))
    assert [d["id"] for d in runs["items"]] == [second["id"], run["id"]]
    assert plain["id"] not in [d["id"] for d in runs["items"]]
    page = await _json(await client.get(f"{path}/runs?limit=1", headers=auth))
    assert [d["id"] for d in page["items"]] == [second["id"]] and page["next_cursor"]
    by_filter = await _json(
        await client.get("/v1/deployments", params={"pipeline_id": pipeline["id"]}, headers=auth)
    )
    assert [d["id"] for d in by_filter["items"]] == [second["id"], run["id"]]
    await deployer.ended(second["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"steps": []}, "$.steps"),
        ({"steps": [{"name": "build", "command": "true"}]}, "$.steps"),
        ({"steps": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]}, "$.steps"),
        ({"steps": [{"name": "bad name", "command": "true"}]}, "$.steps[0].name"),
        ({"name": ""}, "$.name"),
        ({"name": "x", "colour": "red"}, "$.colour"),
    ],
)
async def test_a_bad_change_is_refused_naming_the_field(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    client, auth = stack.client, stack.auth()
    project = await _json(await client.post("/v1/projects", json={"name": "P"}, headers=auth), 201)
    service = await _json(
        await client.post(
            "/v1/services",
            json={
                "project_id": project["id"],
                "name": "web",
                "repository_url": "/srv/web",
                "run_command": "python app.py",
            },
            headers=auth,
        ),
        201,
    )
    pipeline = await _json(
        await client.post(
            f"/v1/services/{service['id']}/pipelines",
            json={"name": "release", "steps": [{"name": "tests", "command": "true"}]},
            headers=auth,
        ),
        201,
    )
    resp = await client.patch(f"/v1/pipelines/{pipeline['id']}", json=body, headers=auth)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["details"]["field"] == field
    unchanged = await _json(await client.get(f"/v1/pipelines/{pipeline['id']}", headers=auth))
    assert (unchanged["name"], unchanged["steps"]) == (pipeline["name"], pipeline["steps"])


async def test_a_service_token_cannot_change_a_pipeline_nor_see_anothers_runs(stack: Stack) -> None:
    client, auth = stack.client, stack.auth()
    project = await _json(await client.post("/v1/projects", json={"name": "P"}, headers=auth), 201)
    services = []
    for name in ("web", "worker"):
        services.append(
            await _json(
                await client.post(
                    "/v1/services",
                    json={
                        "project_id": project["id"],
                        "name": name,
                        "repository_url": "/srv/web",
                        "run_command": "python app.py",
                    },
                    headers=auth,
                ),
                201,
            )
        )
    pipeline = await _json(
        await client.post(
            f"/v1/services/{services[0]['id']}/pipelines",
            json={"name": "release", "steps": [{"name": "tests", "command": "true"}]},
            headers=auth,
        ),
        201,
    )
    token = await _json(
        await client.post(
            f"/v1/services/{services[1]['id']}/tokens", json={"name": "ci"}, headers=auth
        ),
        201,
    )
    key = {"X-API-Key": token["token"]}
    path = f"/v1/pipelines/{pipeline['id']}"
    # A service token never writes (403 before anything is looked up); nor sees other runs.
    assert (await client.patch(path, json={"name": "x"}, headers=key)).status == 403
    assert (await client.get(f"{path}/runs", headers=key)).status == 404
    assert (await client.get("/v1/pipelines/ppl_nothere/runs", headers=auth)).status == 404
    assert (await _json(await client.get(path, headers=auth)))["name"] == "release"
