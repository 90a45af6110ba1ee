"""Live updates: log tails, logs followed as server-sent events, and the WebSocket feed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from gateway import keys
from gateway.routes import live
from libs.eventstore import EventStore
from services.deploy import logs
from services.deploy.logs import LogWriter
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack

TIMEOUT = 5.0


async def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json() if status != 204 else None


async def _deployment(stack: Stack, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A dispatched deployment (script-driven: no agent takes it)."""
    headers = headers or stack.auth()
    post = stack.client.post
    env = await _ok(await post("/v1/environments", json={"name": "staging"}, headers=headers), 201)
    project = await _ok(await post("/v1/projects", json={"name": "Shop"}, headers=headers), 201)
    service = await _ok(
        await post(
            "/v1/services",
            json={
                "project_id": project["id"],
                "name": "web",
                "repository_url": "/srv/repos/web",
                "run_command": ["python", "app.py"],
            },
            headers=headers,
        ),
        201,
    )
    deployment: dict[str, Any] = await _ok(
        await post(
            f"/v1/services/{service['id']}/deployments",
            json={"environment_id": env["id"]},
            headers=headers,
        ),
        201,
    )
    assert deployment["status"] == "dispatched"
    return deployment


async def _report(stack: Stack, deployment_id: str, name: str, state: str) -> None:
    await _ok(
        await stack.client.post(
            f"/v1/deployments/{deployment_id}/steps",
            json={"name": name, "state": state},
            headers=stack.auth(),
        ),
        202,
    )


async def _finish(stack: Stack, deployment_id: str) -> None:
    await _ok(
        await stack.client.put(
            f"/v1/deployments/{deployment_id}/finish",
            json={"status": "success"},
            headers=stack.auth(),
        )
    )


async def _writer(stack: Stack, deployment_id: str, step: str | None = None) -> LogWriter:
    js = stack.client.server.app[keys.NC].jetstream()
    await logs.ensure_stream(js, stack.suite.namespace)
    writer = LogWriter(js, stack.suite.namespace, deployment_id)
    writer.step = step
    return writer


async def _rival(stack: Stack) -> dict[str, str]:
    """Headers of a user who left the admin's organization for one of their own."""
    await _ok(
        await stack.client.post(
            "/v1/users",
            json={"email": "rival@example.com", "password": "s3cret-pass", "name": "Rival"},
            headers=stack.auth(),
        ),
        201,
    )
    rival = stack.auth((await stack.login("rival@example.com", "s3cret-pass"))["access_token"])
    rival_id = (await _ok(await stack.client.get("/v1/users/me", headers=rival)))["id"]
    org = await _ok(
        await stack.client.post("/v1/organizations", json={"name": "Rival Inc"}, headers=rival),
        201,
    )
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
            "organization_id": org["id"],
        },
    )
    return stack.auth((await _ok(resp))["access_token"])


async def _consumers(stack: Stack) -> tuple[int, int]:
    """How many consumers the log stream and the deploy event stream have."""
    js = stack.client.server.app[keys.NC].jetstream()
    namespace = stack.suite.namespace
    counts = []
    for name in (
        logs.stream_name(namespace),
        EventStore(js, namespace=namespace).stream_name("deploy"),
    ):
        counts.append((await js.stream_info(name)).state.consumer_count)
    return counts[0], counts[1]


async def _consumers_back_to(stack: Stack, baseline: tuple[int, int]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while await _consumers(stack) != baseline:
            await asyncio.sleep(0.05)


async def _sse(resp: aiohttp.ClientResponse) -> tuple[str, Any, str | None]:
    """The next server-sent event: (event, decoded data, id)."""
    event, data, event_id = "message", None, None
    async with asyncio.timeout(TIMEOUT):
        while True:
            raw = await resp.content.readline()
            if not raw:
                raise EOFError("the event stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if data is not None:
                    return event, json.loads(data), event_id
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            if name == "event":
                event = value
            elif name == "data":
                data = value
            elif name == "id":
                event_id = value


def _line(text: str, step: str | None = None) -> dict[str, Any]:
    return {"line": text, "step": step}


def _without_ts(data: dict[str, Any]) -> dict[str, Any]:
    assert datetime.fromisoformat(data.pop("ts")).tzinfo is not None
    return data


async def test_tail_returns_the_last_lines_in_order(stack: Stack) -> None:
    deployment = await _deployment(stack)
    writer = await _writer(stack, deployment["id"], step="build")
    other = await _writer(stack, "dep_someone_else")
    for n in range(5):
        await writer.write(f"line {n}", datetime.now(UTC))
        await other.write(f"other {n}", datetime.now(UTC))
    path = f"/v1/deployments/{deployment['id']}/logs"

    tail = await _ok(await stack.client.get(f"{path}?tail=2", headers=stack.auth()))
    assert tail["deployment_id"] == deployment["id"]
    assert [_without_ts(x) for x in tail["lines"]] == [
        _line("line 3", "build"),
        _line("line 4", "build"),
    ]
    everything = await _ok(await stack.client.get(path, headers=stack.auth()))
    assert [x["line"] for x in everything["lines"]] == [f"line {n}" for n in range(5)]

    refused = await stack.client.get(f"{path}?tail=0", headers=stack.auth())
    assert (await _ok(refused, 422))["error"]["details"]["field"] == "$.tail"
    rival = await _rival(stack)
    assert (await stack.client.get(path, headers=rival)).status == 404


async def test_a_long_log_answers_its_last_thousand_lines(stack: Stack) -> None:
    deployment = await _deployment(stack)
    writer = await _writer(stack, deployment["id"])
    # More lines than the reader buffers: delivery must wait for it, not stall.
    await asyncio.gather(*(writer.write(f"l{n}", datetime.now(UTC)) for n in range(1200)))
    body = await _ok(
        await stack.client.get(f"/v1/deployments/{deployment['id']}/logs", headers=stack.auth())
    )
    assert [x["line"] for x in body["lines"]] == [f"l{n}" for n in range(200, 1200)]


async def test_a_deployment_without_lines_has_an_empty_log(stack: Stack) -> None:
    deployment = await _deployment(stack)
    body = await _ok(
        await stack.client.get(f"/v1/deployments/{deployment['id']}/logs", headers=stack.auth())
    )
    assert body == {"deployment_id": deployment["id"], "lines": []}


async def test_follow_streams_lines_and_status_until_the_deployment_ends(stack: Stack) -> None:
    deployment = await _deployment(stack)
    dep_id = deployment["id"]
    writer = await _writer(stack, dep_id)
    await writer.write("cloning", datetime.now(UTC))
    baseline = await _consumers(stack)
    path = f"/v1/deployments/{dep_id}/logs?follow=true"

    async with stack.client.get(path, headers=stack.auth()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-Request-Id"]
        event, data, first_id = await _sse(resp)
        assert (event, _without_ts(data)) == ("log", _line("cloning"))
        assert first_id is not None

        def status(status: str, step: str | None, state: str | None, event: str | None) -> Any:
            return (
                "status",
                {
                    "deployment_id": dep_id,
                    "status": status,
                    "step": step,
                    "state": state,
                    "event": event,
                    "reason": None,
                },
                None,
            )

        assert await _sse(resp) == status("dispatched", None, "dispatched", None)
        writer.step = "migrate"
        await writer.write("applying 0001", datetime.now(UTC))
        event, data, _ = await _sse(resp)
        assert (event, _without_ts(data)) == ("log", _line("applying 0001", "migrate"))
        await _report(stack, dep_id, "migrate", "running")
        assert await _sse(resp) == status(
            "running", "migrate", "running", "deployment.step_started"
        )
        await _report(stack, dep_id, "migrate", "success")
        assert await _sse(resp) == status(
            "running", "migrate", "success", "deployment.step_finished"
        )
        await writer.write("done", datetime.now(UTC))
        assert (await _sse(resp))[0] == "log"
        await _finish(stack, dep_id)
        assert await _sse(resp) == status("succeeded", None, "succeeded", "deployment.succeeded")
        assert await _sse(resp) == ("end", {"deployment_id": dep_id, "status": "succeeded"}, None)
        with pytest.raises(EOFError):
            await _sse(resp)
    await _consumers_back_to(stack, baseline)

    # An ended deployment answers at once; Last-Event-ID resumes after that line.
    headers = {**stack.auth(), "Last-Event-ID": first_id}
    async with stack.client.get(path, headers=headers) as resp:
        received = [await _sse(resp) for _ in range(4)]
    assert [(e, d.get("line") or d.get("status")) for e, d, _ in received] == [
        ("log", "applying 0001"),
        ("log", "done"),
        ("status", "succeeded"),
        ("end", "succeeded"),
    ]
    await _consumers_back_to(stack, baseline)


async def test_a_follower_that_leaves_leaves_no_consumer_behind(stack: Stack) -> None:
    deployment = await _deployment(stack)
    await _writer(stack, deployment["id"])
    baseline = await _consumers(stack)
    async with stack.client.get(
        f"/v1/deployments/{deployment['id']}/logs?follow=true", headers=stack.auth()
    ) as resp:
        assert (await _sse(resp))[0] == "status"
        assert await _consumers(stack) == (baseline[0] + 1, baseline[1] + 1)
    await _consumers_back_to(stack, baseline)


async def _connect(stack: Stack, hello: dict[str, Any]) -> aiohttp.ClientWebSocketResponse:
    ws = await stack.client.ws_connect("/v1/ws")
    await ws.send_json(hello)
    return ws


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> Any:
    return await ws.receive_json(timeout=TIMEOUT)


async def test_websocket_sends_the_callers_organizations_events_only(stack: Stack) -> None:
    deployment = await _deployment(stack)
    dep_id = deployment["id"]
    rival = await _rival(stack)
    success = {"type": "authentication", "status": "success"}

    mine = await _connect(stack, {"access_token": stack.admin_token})
    finished_only = await _connect(
        stack, {"access_token": stack.admin_token, "events": ["deployment.succeeded"]}
    )
    theirs = await _connect(stack, {"access_token": rival["Authorization"].removeprefix("Bearer ")})
    try:
        for ws in (mine, finished_only, theirs):
            assert await _receive(ws) == success
        await mine.send_str("{not json")
        error = await _receive(mine)
        assert error["type"] == "error" and "malformed JSON" in error["message"]
        await mine.send_json({"type": "subscribe", "events": ["deployment.exploded"]})
        assert (await _receive(mine))["field"] == "$.events[0]"

        await _report(stack, dep_id, "migrate", "running")
        await _report(stack, dep_id, "migrate", "success")
        await _finish(stack, dep_id)
        received = [await _receive(mine) for _ in range(3)]
        assert [(m["type"], m["name"], m["state"]) for m in received] == [
            ("deployment.step_started", "migrate", "running"),
            ("deployment.step_finished", "migrate", "success"),
            ("deployment.succeeded", None, "succeeded"),
        ]
        for message in received:
            assert message["deployment_id"] == dep_id
            assert message["organization_id"] == stack.org_id
            assert message["id"] and message["occurred_at"]
            assert message["data"]["type"] == message["type"]
        assert received[1]["data"]["name"] == "migrate"
        assert received[2]["status"] == "succeeded"
        assert (await _receive(finished_only))["type"] == "deployment.succeeded"

        # The rival's own deployment is stored after the admin's events: delivered
        # in stream order, it is the first thing the rival hears.
        own = await _deployment(stack, rival)
        first = await _receive(theirs)
        assert (first["type"], first["deployment_id"]) == ("deployment.created", own["id"])
    finally:
        for ws in (mine, finished_only, theirs):
            await ws.close()


async def test_websocket_refuses_a_bad_token_with_4001(stack: Stack) -> None:
    ws = await _connect(stack, {"access_token": "not-a-token"})
    try:
        failure = await _receive(ws)
        assert failure["type"] == "authentication" and failure["status"] == "failure"
        assert failure["message"]
        closing = await ws.receive(timeout=TIMEOUT)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == 4001
    finally:
        await ws.close()
    # Anything but a token first is refused too.
    ws = await _connect(stack, {"type": "subscribe"})
    try:
        assert (await _receive(ws))["status"] == "failure"
    finally:
        await ws.close()


async def test_websocket_closes_once_the_session_is_revoked(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "RECHECK_SECONDS", 0.2)
    token = (await stack.login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"]
    ws = await _connect(stack, {"access_token": token})
    try:
        assert (await _receive(ws))["status"] == "success"
        await _ok(await stack.client.post("/v1/auth/logout", headers=stack.auth(token)), 204)
        failure = await _receive(ws)
        assert failure["status"] == "failure" and "revoked" in failure["message"]
        assert (await ws.receive(timeout=TIMEOUT)).data == 4001
    finally:
        await ws.close()
