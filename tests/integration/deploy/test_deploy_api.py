"""The deploy context through the gateway: resources, queueing rules, step reports, isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack


async def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json() if status != 204 else None


async def _env(stack: Stack, name: str = "staging", **extra: Any) -> dict[str, Any]:
    return await _ok(
        await stack.client.post(
            "/v1/environments", json={"name": name, **extra}, headers=stack.auth()
        ),
        201,
    )


async def _project(stack: Stack, name: str = "Shop") -> dict[str, Any]:
    return await _ok(
        await stack.client.post("/v1/projects", json={"name": name}, headers=stack.auth()), 201
    )


async def _service(
    stack: Stack, project: str, name: str = "web", repo: str = "/srv/repos/web"
) -> dict[str, Any]:
    body = {
        "project_id": project,
        "name": name,
        "repository_url": repo,
        "build_command": "python -m compileall .",
        "run_command": ["python", "app.py"],
    }
    return await _ok(await stack.client.post("/v1/services", json=body, headers=stack.auth()), 201)


async def _deploy(stack: Stack, service: str, env: str) -> dict[str, Any]:
    return await _ok(
        await stack.client.post(
            f"/v1/services/{service}/deployments",
            json={"environment_id": env},
            headers=stack.auth(),
        ),
        201,
    )


async def test_environment_credentials_are_write_only(stack: Stack) -> None:
    env = await _env(
        stack,
        provider="aws",
        region="eu-west-1",
        type="staging",
        credentials={"access_key": "AKIA-SECRET-VALUE"},
    )
    assert env["has_credentials"] is True
    assert "credentials" not in env and "AKIA-SECRET-VALUE" not in str(env)
    listed = await _ok(
        await stack.client.get("/v1/environments?type=staging", headers=stack.auth())
    )
    assert [e["id"] for e in listed["items"]] == [env["id"]]
    org_scoped = await _ok(
        await stack.client.get(
            f"/v1/organizations/{stack.org_id}/environments", headers=stack.auth()
        )
    )
    assert [e["id"] for e in org_scoped["items"]] == [env["id"]]
    patched = await _ok(
        await stack.client.patch(
            f"/v1/environments/{env['id']}", json={"status": "inactive"}, headers=stack.auth()
        )
    )
    assert patched["status"] == "inactive"


async def test_services_and_their_env_vars(stack: Stack) -> None:
    project = await _project(stack)
    service = await _service(stack, project["id"])
    assert service["build_command"] == ["python", "-m", "compileall", "."]
    put = await stack.client.put(
        f"/v1/services/{service['id']}/env/DATABASE_URL",
        json={"value": "postgres://s3cr3t", "secret": True},
        headers=stack.auth(),
    )
    assert (await _ok(put))["value"] is None
    await _ok(
        await stack.client.put(
            f"/v1/services/{service['id']}/env/LOG_LEVEL",
            json={"value": "debug"},
            headers=stack.auth(),
        )
    )
    env = await _ok(
        await stack.client.get(f"/v1/services/{service['id']}/env", headers=stack.auth())
    )
    assert env == [
        {"key": "DATABASE_URL", "secret": True, "value": None, "updated_at": env[0]["updated_at"]},
        {"key": "LOG_LEVEL", "secret": False, "value": "debug", "updated_at": env[1]["updated_at"]},
    ]
    reserved = await stack.client.put(
        f"/v1/services/{service['id']}/env/PORT", json={"value": "1"}, headers=stack.auth()
    )
    assert (await reserved.json())["error"]["details"]["field"] == "$.key"
    await _ok(
        await stack.client.delete(
            f"/v1/services/{service['id']}/env/LOG_LEVEL", headers=stack.auth()
        ),
        204,
    )


async def test_queue_keeps_one_per_service_and_five_per_organization(stack: Stack) -> None:
    env = await _env(stack)
    project = await _project(stack)
    services = [await _service(stack, project["id"], name=f"svc{n}") for n in range(7)]
    deployments = [await _deploy(stack, s["id"], env["id"]) for s in services]
    assert [d["status"] for d in deployments] == ["dispatched"] * 5 + ["queued"] * 2
    assert [d["queue_position"] for d in deployments[5:]] == [1, 2]
    # A second deployment of a running service and environment waits behind it.
    again = await _deploy(stack, services[0]["id"], env["id"])
    assert again["status"] == "queued" and again["queue_position"] == 3

    # A script-driven deployment (fastDeploy) reports its steps and finishes.
    first = deployments[0]["id"]
    for state in ("running", "success"):
        await _ok(
            await stack.client.post(
                f"/v1/deployments/{first}/steps",
                json={"name": "migrate", "state": state},
                headers=stack.auth(),
            ),
            202,
        )
    finished = await _ok(
        await stack.client.put(
            f"/v1/deployments/{first}/finish", json={"status": "success"}, headers=stack.auth()
        )
    )
    assert finished["status"] == "succeeded" and finished["progress"] == 100
    steps = await _ok(
        await stack.client.get(f"/v1/deployments/{first}/steps", headers=stack.auth())
    )
    assert [(s["name"], s["state"]) for s in steps] == [("migrate", "success")]

    # Its slot went to the first in the queue, in order.
    sixth = await _ok(
        await stack.client.get(f"/v1/deployments/{deployments[5]['id']}", headers=stack.auth())
    )
    seventh = await _ok(
        await stack.client.get(f"/v1/deployments/{deployments[6]['id']}", headers=stack.auth())
    )
    assert sixth["status"] == "dispatched"
    assert seventh["status"] == "queued" and seventh["queue_position"] == 1

    cancelled = await _ok(
        await stack.client.post(
            f"/v1/deployments/{deployments[1]['id']}/cancel", headers=stack.auth()
        )
    )
    assert cancelled["status"] == "cancelled"
    seventh = await _ok(
        await stack.client.get(f"/v1/deployments/{deployments[6]['id']}", headers=stack.auth())
    )
    assert seventh["status"] == "dispatched"
    again = await _ok(
        await stack.client.get(f"/v1/deployments/{again['id']}", headers=stack.auth())
    )
    # Five are running again; it is first in line now, behind no one.
    assert again["status"] == "queued" and again["queue_position"] == 1
    await _ok(
        await stack.client.post(
            f"/v1/deployments/{deployments[2]['id']}/cancel", headers=stack.auth()
        )
    )
    again = await _ok(
        await stack.client.get(f"/v1/deployments/{again['id']}", headers=stack.auth())
    )
    assert again["status"] == "dispatched"

    history = await _ok(
        await stack.client.get("/v1/deployments?status=cancelled", headers=stack.auth())
    )
    assert {d["id"] for d in history["items"]} == {deployments[1]["id"], deployments[2]["id"]}
    refused = await stack.client.post(
        f"/v1/deployments/{deployments[1]['id']}/cancel", headers=stack.auth()
    )
    assert refused.status == 409


async def test_rollback_needs_a_release(stack: Stack) -> None:
    env = await _env(stack)
    service = await _service(stack, (await _project(stack))["id"])
    first = await _deploy(stack, service["id"], env["id"])
    await _ok(await stack.client.put(f"/v1/deployments/{first['id']}/finish", headers=stack.auth()))
    second = await _deploy(stack, service["id"], env["id"])
    resp = await stack.client.post(f"/v1/deployments/{second['id']}/rollback", headers=stack.auth())
    body = await resp.json()
    # A script-finished deployment built no release the agent could reuse.
    assert resp.status == 409, body
    assert body["error"]["details"]["field"] == "$.deployment_id"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repository_url", "ext::sh -c touch% /tmp/canary"),
        ("repository_url", "--upload-pack=touch /tmp/canary"),
        ("repository_url", "fd::17"),
        ("branch", "--output=/tmp/canary"),
        ("branch", "main; touch /tmp/canary"),
        ("branch", "$(touch /tmp/canary)"),
    ],
)
async def test_option_like_and_shell_values_are_refused(
    stack: Stack, field: str, value: str, tmp_path: Path
) -> None:
    project = await _project(stack)
    body = {
        "project_id": project["id"],
        "name": "evil",
        "repository_url": "/srv/repo",
        "run_command": "python app.py",
        field: value,
    }
    resp = await stack.client.post("/v1/services", json=body, headers=stack.auth())
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["details"]["field"] == f"$.{field}"
    assert not Path("/tmp/canary").exists()  # noqa: S108 (the path an attack would write)


async def test_another_organizations_resources_answer_404(stack: Stack) -> None:
    env = await _env(stack)
    project = await _project(stack)
    service = await _service(stack, project["id"])
    deployment = await _deploy(stack, service["id"], env["id"])
    await _ok(
        await stack.client.post(
            "/v1/users",
            json={"email": "rival@example.com", "password": "s3cret-pass", "name": "Rival"},
            headers=stack.auth(),
        ),
        201,
    )
    rival = await stack.login("rival@example.com", "s3cret-pass")
    rival_id = (
        await _ok(await stack.client.get("/v1/users/me", headers=stack.auth(rival["access_token"])))
    )["id"]
    rival_org = await _ok(
        await stack.client.post(
            "/v1/organizations",
            json={"name": "Rival Inc"},
            headers=stack.auth(rival["access_token"]),
        ),
        201,
    )
    # The rival leaves the admin's organization, then logs in to their own.
    await _ok(
        await stack.client.delete(
            f"/v1/organizations/{stack.org_id}/members/{rival_id}", headers=stack.auth()
        ),
        204,
    )
    resp = await stack.client.post(
        "/v1/auth/login",
        json={
            "email": "rival@example.com",
            "password": "s3cret-pass",
            "organization_id": rival_org["id"],
        },
    )
    headers = stack.auth((await _ok(resp))["access_token"])
    for method, path in [
        ("GET", f"/v1/environments/{env['id']}"),
        ("PATCH", f"/v1/environments/{env['id']}"),
        ("GET", f"/v1/projects/{project['id']}"),
        ("GET", f"/v1/services/{service['id']}"),
        ("GET", f"/v1/services/{service['id']}/env"),
        ("GET", f"/v1/services/{service['id']}/deployments"),
        ("POST", f"/v1/services/{service['id']}/deployments"),
        ("GET", f"/v1/deployments/{deployment['id']}"),
        ("GET", f"/v1/deployments/{deployment['id']}/steps"),
        ("POST", f"/v1/deployments/{deployment['id']}/cancel"),
        ("GET", f"/v1/organizations/{stack.org_id}/environments"),
    ]:
        resp = await stack.client.request(
            method, path, json={"name": "x"} if method != "GET" else None, headers=headers
        )
        assert resp.status == 404, (method, path, await resp.text())
    own = await _ok(await stack.client.get("/v1/environments", headers=headers))
    assert own["items"] == []


async def test_a_service_token_deploys_its_own_service_only(stack: Stack) -> None:
    env = await _env(stack)
    project = await _project(stack)
    mine = await _service(stack, project["id"], name="mine")
    other = await _service(stack, project["id"], name="other")
    issued = await _ok(
        await stack.client.post(
            f"/v1/services/{mine['id']}/tokens",
            json={"name": "ci", "expires_in_days": 90},
            headers=stack.auth(),
        ),
        201,
    )
    assert issued["token"].startswith("dfs_") and issued["kind"] == "service"
    key = {"X-API-Key": issued["token"]}
    deployed = await stack.client.post(
        f"/v1/services/{mine['id']}/deployments", json={"environment_id": env["id"]}, headers=key
    )
    assert deployed.status == 201, await deployed.text()
    for method, path in [
        ("POST", f"/v1/services/{other['id']}/deployments"),
        ("GET", f"/v1/services/{other['id']}"),
    ]:
        resp = await stack.client.request(
            method,
            path,
            json={"environment_id": env["id"]} if method == "POST" else None,
            headers=key,
        )
        assert resp.status == 404, (path, await resp.text())
    listed = await _ok(await stack.client.get("/v1/services", headers=key))
    assert [x["id"] for x in listed["items"]] == [mine["id"]]
    history = await _ok(await stack.client.get("/v1/deployments", headers=key))
    assert {d["service_id"] for d in history["items"]} == {mine["id"]}
    too_long = await stack.client.post(
        f"/v1/services/{mine['id']}/tokens",
        json={"name": "x", "expires_in_days": 181},
        headers=stack.auth(),
    )
    assert (await too_long.json())["error"]["details"]["field"] == "$.expires_in_days"
    # A service token cannot write the service, nor mint more tokens.
    refused = await stack.client.patch(
        f"/v1/services/{mine['id']}", json={"name": "x"}, headers=key
    )
    assert refused.status == 403


async def test_delete_guards_read_the_events_not_the_read_model(stack: Stack) -> None:
    # Each refusal comes right after the change it depends on, before any read model
    # could have applied it: the guards decide from the aggregates' own histories.
    env = await _env(stack)
    project = await _project(stack)
    service = await _service(stack, project["id"])
    refused = await stack.client.delete(f"/v1/projects/{project['id']}", headers=stack.auth())
    assert refused.status == 409, await refused.text()
    assert "1 service" in (await refused.json())["error"]["message"]

    deployment = await _deploy(stack, service["id"], env["id"])
    busy = await stack.client.delete(f"/v1/services/{service['id']}", headers=stack.auth())
    assert busy.status == 409, await busy.text()

    await _ok(
        await stack.client.post(f"/v1/deployments/{deployment['id']}/cancel", headers=stack.auth())
    )
    await _ok(await stack.client.delete(f"/v1/services/{service['id']}", headers=stack.auth()), 204)
    await _ok(await stack.client.delete(f"/v1/projects/{project['id']}", headers=stack.auth()), 204)
