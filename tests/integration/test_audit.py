"""The audit trail: each change through the API leaves exactly one entry, with who,
what (field names only), when and the request; never a secret; owners and admins only."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest

from libs.eventstore import EventStore
from libs.replay import replay
from services.audit.main import CONTEXT as AUDIT
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack
from tests.integration.deploy.test_agent_deploys import commit_version, make_service

CANARY = "canary-" + secrets.token_hex(8)


@pytest.fixture
async def audited(stack: Stack) -> Stack:
    await stack.start_webhooks()
    # No resolver answers here: a verification fails fast, which is a change too.
    await stack.start(
        "domains", domains_dns_resolver="127.0.0.1:9", domains_dns_timeout_seconds=0.5
    )
    # No endpoint answers: a resource's job fails fast (no usable credentials either).
    await stack.start("drift", drift_aws_endpoint_url="http://127.0.0.1:9")
    await stack.start("audit")
    return stack


async def _entries(stack: Stack, org: str, **query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {}), "limit": "200"}
        resp = await stack.client.get(
            f"/v1/organizations/{org}/audit", params=params, headers=stack.auth()
        )
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        found += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return found


REQUESTS: list[str] = []  # every request id a test made: each leaves one entry


async def _call(
    stack: Stack,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    *,
    form: dict[str, str] | None = None,
    anonymous: bool = False,
) -> tuple[str, Any]:
    request_id = "req_audit_" + secrets.token_hex(6)
    REQUESTS.append(request_id)
    resp = await stack.client.request(
        method,
        path,
        json=body if form is None else None,
        data=form,
        headers={**({} if anonymous else stack.auth(token)), "X-Request-Id": request_id},
    )
    assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
    return request_id, (await resp.json() if resp.status != 204 else None)


async def _one_entry(
    stack: Stack, org: str, request_id: str, event_type: str, resource_id: str | None
) -> dict[str, Any]:
    for _ in range(300):
        entries = [
            e
            for e in await _entries(stack, org, correlation_id=request_id)
            if e["event_type"] == event_type and e["causation_id"] is None
        ]
        if entries:
            break
        await asyncio.sleep(0.05)
    assert len(entries) == 1, (event_type, entries)
    entry = entries[0]
    assert resource_id is None or entry["resource"]["id"] == resource_id, entry
    assert entry["request_id"] == request_id
    return entry


async def test_each_change_leaves_one_entry_and_no_secret(audited: Stack) -> None:
    stack, org = audited, audited.org_id
    steps: list[tuple[str, str, Callable[[Any, dict[str, str]], str]]] = []
    ids: dict[str, str] = {}

    async def step(
        method: str,
        path: str,
        body: Any,
        event_type: str,
        resource: Callable[[Any], str | None],
        *,
        in_org: str | None = None,
        token: str | None = None,
        **call: Any,
    ) -> dict[str, Any]:
        request_id, reply = await _call(stack, method, path.format(**ids), body, token, **call)
        entry = await _one_entry(stack, in_org or org, request_id, event_type, resource(reply))
        steps.append((method, path, lambda _r, _i: event_type))
        return entry

    env = await step(
        "POST",
        "/v1/environments",
        {"name": "prod", "credentials": {"aws_secret_access_key": CANARY}},
        "environment.created",
        lambda r: ids.setdefault("env", r["id"]),
    )
    assert "credentials_sealed" in env["fields"] and env["actor"]["type"] == "user"
    assert env["actor"]["user_email"] == ADMIN_EMAIL
    await step(
        "PATCH",
        "/v1/environments/{env}",
        {"region": "eu"},
        "environment.updated",
        lambda _: ids["env"],
    )
    await step(
        "POST",
        "/v1/projects",
        {"name": "shop"},
        "project.created",
        lambda r: ids.setdefault("prj", r["id"]),
    )
    updated = await step(
        "PATCH", "/v1/projects/{prj}", {"description": "x"}, "project.updated", lambda _: ids["prj"]
    )
    assert updated["fields"] == ["description"]
    await step(
        "POST",
        "/v1/services",
        {
            "project_id": ids["prj"],
            "name": "web",
            "repository_url": "https://example.com/web.git",
            "run_command": ["python", "app.py"],
        },
        "service.created",
        lambda r: ids.setdefault("svc", r["id"]),
    )
    await step(
        "PATCH", "/v1/services/{svc}", {"replicas": 2}, "service.updated", lambda _: ids["svc"]
    )
    for secret in (True, False):
        await step(
            "PUT",
            "/v1/services/{svc}/env/API_KEY",
            {"value": CANARY, "secret": secret},
            "service.env_var_set",
            lambda _: ids["svc"],
        )
    await step(
        "DELETE",
        "/v1/services/{svc}/env/API_KEY",
        None,
        "service.env_var_removed",
        lambda _: ids["svc"],
    )
    await step(
        "POST",
        "/v1/services/{svc}/pipelines",
        {"name": "ci", "steps": [{"name": "test", "command": ["true"]}]},
        "pipeline.created",
        lambda r: ids.setdefault("pipe", r["id"]),
    )
    await step(
        "PATCH", "/v1/pipelines/{pipe}", {"name": "ci2"}, "pipeline.updated", lambda _: ids["pipe"]
    )
    await step(
        "POST",
        "/v1/services/{svc}/deployments",
        {"environment_id": ids["env"]},
        "deployment.created",
        lambda r: ids.setdefault("dpl", r["id"]),
    )
    await step(
        "POST", "/v1/deployments/{dpl}/cancel", None, "deployment.cancelled", lambda _: ids["dpl"]
    )
    await step(
        "POST",
        "/v1/pipelines/{pipe}/run",
        {"environment_id": ids["env"]},
        "deployment.created",
        lambda r: ids.setdefault("run", r["id"]),
    )
    await step(
        "POST", "/v1/deployments/{run}/cancel", None, "deployment.cancelled", lambda _: ids["run"]
    )
    await step(
        "POST",
        "/v1/services/{svc}/deployments",
        {"environment_id": ids["env"]},
        "deployment.created",
        lambda r: ids.setdefault("scripted", r["id"]),
    )
    await step(
        "POST",
        "/v1/deployments/{scripted}/steps",
        {"name": "migrate", "state": "running"},
        "deployment.step_started",
        lambda _: ids["scripted"],
    )
    await step(
        "PUT",
        "/v1/deployments/{scripted}/finish",
        {"status": "success"},
        "deployment.succeeded",
        lambda _: ids["scripted"],
    )
    for action in ("stop", "start", "restart"):
        await step(
            "POST",
            f"/v1/services/{{svc}}/{action}",
            {"environment_id": ids["env"]},
            "service.control_requested",
            lambda _: ids["svc"],
        )
    await step("DELETE", "/v1/pipelines/{pipe}", None, "pipeline.deleted", lambda _: ids["pipe"])
    for kind, body in [
        ("environments", {"name": "scoped"}),
        ("projects", {"name": "scoped"}),
        (
            "services",
            {
                "project_id": ids["prj"],
                "name": "scoped",
                "repository_url": "https://example.com/scoped.git",
                "run_command": ["python", "app.py"],
            },
        ),
        ("webhooks", {"url": "https://example.com/scoped", "events": ["project.*"]}),
    ]:
        scoped = await step(
            "POST",
            f"/v1/organizations/{org}/{kind}",
            body,
            f"{kind[:-1]}.created",
            lambda r: r["id"],
        )
        ids[f"scoped_{kind}"] = scoped["resource"]["id"]
    target = {"service_id": ids["svc"], "environment_id": ids["env"]}
    for path, body in [
        ("/v1/domains", {"domain": "audit.example.com", **target}),
        (f"/v1/organizations/{org}/domains", {"domain": "scoped.example.com", **target}),
        ("/v1/services/{svc}/domains", {"domain": "svc.example.com", "environment_id": ids["env"]}),
        ("/v1/proxy/routes", {"domain": "route.example.com", "port": 3000, **target}),
    ]:
        added = await step("POST", path, body, "domain.added", lambda r: r["id"])
        ids.setdefault("dom", added["resource"]["id"])
        ids["route"] = added["resource"]["id"]
    await step("PATCH", "/v1/domains/{dom}", {"port": 8080}, "domain.updated", lambda _: ids["dom"])
    await step(
        "POST", "/v1/domains/{dom}/verify", None, "domain.verification_failed", lambda _: ids["dom"]
    )
    await step("DELETE", "/v1/domains/{dom}", None, "domain.removed", lambda _: ids["dom"])
    await step("DELETE", "/v1/proxy/routes/{route}", None, "domain.removed", lambda _: ids["route"])
    resource = {"environment_id": ids["env"], "type": "volume", "region": "eu-west-1",
                "specs": {"size": 10}}  # fmt: skip
    for path in (
        "/v1/infrastructure/resources",
        f"/v1/organizations/{org}/infrastructure/resources",
    ):
        declared = await step(
            "POST", path, resource, "infrastructure.resource_requested", lambda r: r["id"]
        )
        ids["res"] = declared["resource"]["id"]
    for _ in range(300):  # its job fails (nothing answers): then it may be deleted
        state = await stack.client.get(
            "/v1/infrastructure/resources/{res}".format(**ids), headers=stack.auth()
        )
        if (await state.json())["status"] == "failed":
            break
        await asyncio.sleep(0.05)
    await step(
        "DELETE",
        "/v1/infrastructure/resources/{res}",
        None,
        "infrastructure.resource_deletion_requested",
        lambda _: ids["res"],
    )
    await step(
        "POST",
        "/v1/environments/{env}/drift-ignore-rules",
        {"pointer": "/tags/owner", "reason": "owners are set by finance"},
        "drift.ignore_rule_added",
        lambda r: ids.setdefault("ign", r["id"]),
    )
    await step(
        "DELETE", "/v1/drift-ignore-rules/{ign}", None, "drift.ignore_rule_removed",
        lambda _: ids["ign"],
    )  # fmt: skip
    await step(
        "PUT",
        "/v1/environments/{env}/drift-schedule",
        {"cron": "0 3 * * *", "mode": "detect"},
        "drift.schedule_set",
        lambda _: ids["env"],
    )
    await step(
        "DELETE", "/v1/environments/{env}/drift-schedule", None, "drift.schedule_removed",
        lambda _: ids["env"],
    )  # fmt: skip
    await step(
        "DELETE",
        "/v1/services/{scoped_services}",
        None,
        "service.deleted",
        lambda _: ids["scoped_services"],
    )
    await step(
        "POST",
        "/v1/webhooks",
        {
            "url": "https://example.com/hook",
            "events": ["project.*"],
            "secret": "whsec_" + "Q2FuYXJ5" * 4,
        },
        "webhook.created",
        lambda r: ids.setdefault("hook", r["id"]),
    )
    await step(
        "PATCH",
        "/v1/webhooks/{hook}",
        {"description": "d"},
        "webhook.updated",
        lambda _: ids["hook"],
    )
    await step(
        "POST",
        "/v1/webhooks/{hook}/rotate-secret",
        {},
        "webhook.secret_rotated",
        lambda _: ids["hook"],
    )
    await step(
        "POST",
        "/v1/webhooks/{hook}/replay",
        {"since": "2026-01-01T00:00:00Z"},
        "webhook.replay_requested",
        lambda _: ids["hook"],
    )
    await step(
        "POST",
        "/v1/webhooks/{hook}/test",
        None,
        "delivery.scheduled",
        lambda r: ids.setdefault("ping", r["id"]),
    )
    # Redelivering a delivery whose attempt is still on its way changes nothing (and
    # leaves no entry): wait until the ping has been attempted.
    for _ in range(300):
        listed = await stack.client.get(
            "/v1/webhooks/{hook}/deliveries".format(**ids), headers=stack.auth()
        )
        items = (await listed.json())["items"]
        if any(d["id"] == ids["ping"] and d["status"] != "pending" for d in items):
            break
        await asyncio.sleep(0.05)
    await step(
        "POST",
        "/v1/webhooks/deliveries/{ping}/redeliver",
        None,
        "delivery.requeued",
        lambda _: ids["ping"],
    )
    await step("DELETE", "/v1/webhooks/{hook}", None, "webhook.deleted", lambda _: ids["hook"])
    # Sessions: signing in to the organization, refreshing, signing out. (A login
    # without an organization, as `/v1/auth/token` makes, is in no organization's trail.)
    credentials = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "organization_id": org}
    login_id, pair = await _call(stack, "POST", "/v1/auth/login", credentials, anonymous=True)
    await _one_entry(stack, org, login_id, "session.started", None)
    refresh_id, rotated = await _call(
        stack, "POST", "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}, anonymous=True
    )
    session = (await _one_entry(stack, org, refresh_id, "session.refreshed", None))["resource"]
    logout_id, _ = await _call(stack, "POST", "/v1/auth/logout", None, rotated["access_token"])
    ended = await _one_entry(stack, org, logout_id, "session.revoked", session["id"])
    assert ended["actor"]["user_email"] == ADMIN_EMAIL
    issued = await _call(
        stack, "POST", "/v1/tokens", {"name": "ci-bot", "scopes": ["read", "write"]}
    )
    token_secret = issued[1]["token"]
    await _one_entry(stack, org, issued[0], "token.issued", issued[1]["id"])
    # A change made with the token names the token.
    by_token = await step(
        "POST",
        "/v1/projects",
        {"name": "by-token"},
        "project.created",
        lambda r: r["id"],
        token=token_secret,
    )
    assert by_token["actor"]["type"] == "token"
    assert (by_token["actor"]["id"], by_token["actor"]["name"]) == (issued[1]["id"], "ci-bot")
    await step(
        "DELETE", f"/v1/tokens/{issued[1]['id']}", None, "token.revoked", lambda _: issued[1]["id"]
    )
    added = await _call(
        stack,
        "POST",
        "/v1/users",
        {"email": "ann@example.com", "password": "long enough pw", "name": "Ann", "role": "viewer"},
    )
    ids["usr"] = added[1]["id"]
    await _one_entry(stack, org, added[0], "organization.member_added", org)
    await step(
        "PATCH",
        "/v1/organizations/{org}/members/{usr}".replace("{org}", org),
        {"role": "deployer"},
        "organization.member_role_changed",
        lambda _: org,
    )
    await step(
        "POST",
        "/v1/environments/{env}/deployments",
        {"service_id": ids["svc"]},
        "deployment.created",
        lambda r: ids.setdefault("dpl2", r["id"]),
    )
    await step(
        "POST", "/v1/deployments/{dpl2}/cancel", None, "deployment.cancelled", lambda _: ids["dpl2"]
    )
    await step(
        "POST", "/v1/services/{svc}/tokens", {"name": "deployer"}, "token.issued", lambda r: r["id"]
    )
    second = await _call(stack, "POST", "/v1/organizations", {"name": "Second"})
    ids["org2"] = second[1]["id"]
    await _one_entry(stack, ids["org2"], second[0], "organization.created", ids["org2"])
    await step(
        "POST",
        "/v1/organizations/{org2}/members",
        {"user_id": ids["usr"], "role": "viewer"},
        "organization.member_added",
        lambda _: ids["org2"],
        in_org=ids["org2"],
    )
    await step(
        "DELETE",
        "/v1/organizations/{org2}/members/{usr}",
        None,
        "organization.member_removed",
        lambda _: ids["org2"],
        in_org=ids["org2"],
    )
    await step("DELETE", "/v1/services/{svc}", None, "service.deleted", lambda _: ids["svc"])
    await step("DELETE", "/v1/projects/{prj}", None, "project.deleted", lambda _: ids["prj"])
    await step(
        "DELETE", "/v1/environments/{env}", None, "environment.deleted", lambda _: ids["env"]
    )

    # Each request left exactly one entry (what it caused by itself is not a change of
    # its own: a queue slot, a name claim, a dispatch; consequences name their cause).
    trail = await _entries(stack, org) + await _entries(stack, ids["org2"])
    per_request: dict[str, list[str]] = {}
    for entry in trail:
        if entry["causation_id"] is None and entry["request_id"] in REQUESTS:
            per_request.setdefault(entry["request_id"], []).append(entry["event_type"])
    # Creating an organization is two facts: it exists, and its creator owns it.
    together = [["organization.created", "organization.member_added"]]
    assert {r: t for r, t in per_request.items() if len(t) != 1 and sorted(t) not in together} == {}
    # No value of any of those changes is in the trail.
    everything = json.dumps(trail)
    assert CANARY not in everything
    assert token_secret not in everything
    assert "Q2FuYXJ5" not in everything
    assert len(steps) >= 30


async def test_filters_paging_and_who_may_read(audited: Stack) -> None:
    stack, org = audited, audited.org_id
    for n in range(5):
        await _call(stack, "POST", "/v1/projects", {"name": f"p{n}"})
    for _ in range(300):
        created = await _entries(stack, org, event_type="project.created")
        if len(created) == 5:
            break
        await asyncio.sleep(0.05)
    assert [e["resource"]["type"] for e in created] == ["project"] * 5
    times = [e["occurred_at"] for e in created]
    assert times == sorted(times, reverse=True)  # newest first
    resp = await stack.client.get(
        f"/v1/organizations/{org}/audit",
        params={"event_type": "project.*", "limit": "2"},
        headers=stack.auth(),
    )
    page = await resp.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    mine = await _entries(stack, org, actor=stack.admin_id, resource_type="project")
    assert {e["resource"]["id"] for e in created} <= {e["resource"]["id"] for e in mine}
    assert await _entries(stack, org, actor="usr_nobody") == []

    viewer = await stack.client.post(
        "/v1/users",
        json={"email": "vic@example.com", "password": "long enough pw", "name": "Vic"},
        headers=stack.auth(),
    )
    assert viewer.status == 201
    session = await stack.login("vic@example.com", "long enough pw")
    denied = await stack.client.get("/v1/audit", headers=stack.auth(session["access_token"]))
    assert denied.status == 403, await denied.text()
    outsider = await stack.outsider()
    # The gateway learns the removal from the auth events: until then the rival is a
    # plain member (403); never does anyone outside the owners and admins read it.
    for _ in range(200):
        hidden = await stack.client.get(f"/v1/organizations/{org}/audit", headers=outsider)
        assert hidden.status in (403, 404), await hidden.text()
        if hidden.status == 404:
            break
        await asyncio.sleep(0.05)
    assert hidden.status == 404


async def test_a_replayed_trail_equals_the_live_one(audited: Stack) -> None:
    stack = audited
    for n in range(3):
        await _call(stack, "POST", "/v1/projects", {"name": f"r{n}"})
    for _ in range(300):
        if len(await _entries(stack, stack.org_id, event_type="project.created")) == 3:
            break
        await asyncio.sleep(0.05)
    query = "SELECT * FROM audit_deploy.entries ORDER BY event_id"
    conn = await asyncpg.connect(stack.suite.database_url)
    try:
        live = [dict(r) for r in await conn.fetch(query)]
        nc = await nats.connect(stack.suite.nats_url)
        try:
            store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
            factory = next(f for f in AUDIT.projections if f().name == "audit_deploy")
            await replay(factory(), stack.suite.database_url, store)
        finally:
            await nc.close()
        assert [dict(r) for r in await conn.fetch(query)] == live
        assert len(live) >= 3
    finally:
        await conn.close()


async def test_rollbacks_and_instance_controls_leave_one_entry(
    audited: Stack, tmp_path: Path
) -> None:
    # These need a deployment that ran: a real agent deploys a real repository.
    stack, org = audited, audited.org_id
    repo = tmp_path / "repo"
    repo.mkdir()
    git = shutil.which("git") or "git"
    subprocess.run([git, "init", "-q", "-b", "main", str(repo)], check=True)
    commit_version(repo, "v1")
    await stack.start_agent(tmp_path / "agent", drain_seconds=0.5, health_timeout_seconds=15)
    deployer = await make_service(stack, repo)
    first = await deployer.ended((await deployer.start())["id"])
    commit_version(repo, "v2")
    second = await deployer.ended((await deployer.start())["id"])
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")

    request_id, rollback = await _call(stack, "POST", f"/v1/deployments/{second['id']}/rollback")
    entry = await _one_entry(stack, org, request_id, "deployment.created", rollback["id"])
    assert "rollback_of" in entry["fields"]
    await deployer.ended(rollback["id"])

    listed = await stack.client.get(
        f"/v1/services/{deployer.service}/instances", headers=stack.auth()
    )
    [instance] = await listed.json()
    for method, action in [
        ("POST", "restart"),
        ("POST", "stop"),
        ("POST", "start"),
        ("DELETE", ""),
    ]:
        path = f"/v1/instances/{instance['instance_id']}" + (f"/{action}" if action else "")
        request_id, _ = await _call(stack, method, path)
        await _one_entry(
            stack, org, request_id, "service.instance_control_requested", deployer.service
        )
