"""The webhooks API: validation, secrets, test pings, rotation, replay, organization walls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Stack
from tests.integration.webhooks.conftest import (
    Receivers,
    create_project,
    create_webhook,
    until_delivery,
    verify,
)


async def _error(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = (await resp.json())["error"]
    return body


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "2130706433",
        "127.1",
        "0x7f.0.0.1",
        "0.0.0.0",
        "10.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[fd00::1]",
    ],
)
async def test_non_public_receivers_are_refused_and_never_called(
    stack: Stack, receivers: Receivers, host: str
) -> None:
    # No allowlist here: loopback is as forbidden as any other private address.
    await stack.start_webhooks(webhook_allowed_networks="")
    listener = await receivers()
    port = listener.url.split(":")[2].split("/")[0]
    resp = await stack.client.post(
        "/v1/webhooks",
        json={"url": f"http://{host}:{port}/hook", "events": ["*"]},
        headers=stack.auth(),
    )
    assert resp.status == 422, await resp.text()
    error = await _error(resp)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["field"] == "$.url"
    await create_project(stack, "Anything")
    await asyncio.sleep(0.5)
    assert listener.requests == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "$.url"),
        ({"url": "http://user:pw@example.com/x", "events": ["*"]}, "$.url"),
        ({"url": "https://example.com/x", "events": ["deployment.exploded"]}, "$.events[0]"),
        ({"url": "https://example.com/x", "events": ["*", "nope.*"]}, "$.events[1]"),
        ({"url": "https://example.com/x", "events": []}, "$.events"),
        ({"url": "https://example.com/x", "events": ["*"], "secret": "hunter2"}, "$.secret"),
        ({"url": "https://example.com/x", "events": ["*"], "secret": "whsec_!!"}, "$.secret"),
        ({"url": "https://example.com/x", "events": ["*"], "rate_limit": 0}, "$.rate_limit"),
        ({"url": "https://example.com/x", "events": ["*"], "colour": "red"}, "$.colour"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    hooks: Stack, body: dict[str, Any], field: str
) -> None:
    resp = await hooks.client.post("/v1/webhooks", json=body, headers=hooks.auth())
    assert resp.status == 422, await resp.text()
    error = await _error(resp)
    assert error["details"]["field"] == field
    assert "hunter2" not in await resp.text()


async def test_a_name_that_does_not_resolve_yet_is_accepted_and_retried(
    hooks: Stack,
) -> None:
    hook = await create_webhook(hooks, "https://hooks.invalid/in", ["project.created"])
    await create_project(hooks, "Unresolved")
    delivery = await until_delivery(hooks, hook["id"], lambda d: bool(d["attempts"]))
    assert "could not resolve" in delivery["attempts"][0]["error"]


async def test_the_secret_is_shown_once_and_a_given_one_is_used(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook = await create_webhook(hooks, receiver.url, ["project.created"], secret=secret)
    assert hook["secret"] == secret
    resp = await hooks.client.get(f"/v1/webhooks/{hook['id']}", headers=hooks.auth())
    shown = await resp.text()
    listed = await (await hooks.client.get("/v1/webhooks", headers=hooks.auth())).text()
    assert secret not in shown and secret not in listed
    await create_project(hooks, "Signed")
    [request] = await receiver.wait_for(lambda r: len(r) >= 1)
    assert verify(secret, request)["type"] == "project.created"


async def test_a_test_ping_reaches_the_endpoint_whatever_it_subscribes_to(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers()
    hook = await create_webhook(hooks, receiver.url, ["deployment.failed"])
    resp = await hooks.client.post(f"/v1/webhooks/{hook['id']}/test", headers=hooks.auth())
    assert resp.status == 202
    delivery_id = (await resp.json())["id"]
    [ping] = await receiver.wait_for(lambda r: len(r) >= 1)
    payload = verify(hook["secret"], ping)
    assert payload["type"] == "webhook.ping"
    assert payload["data"]["webhook_id"] == hook["id"]
    assert ping.webhook_id == delivery_id
    delivery = await until_delivery(hooks, hook["id"], lambda d: d["id"] == delivery_id)
    assert delivery["event_type"] == "webhook.ping"


async def test_after_rotation_both_secrets_sign_until_the_old_one_expires(
    stack: Stack, receivers: Receivers
) -> None:
    await stack.start_webhooks(webhook_rotation_grace_seconds=2)
    receiver = await receivers()
    hook = await create_webhook(stack, receiver.url, ["project.created"])
    resp = await stack.client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=stack.auth())
    assert resp.status == 200, await resp.text()
    rotated = await resp.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    expires = datetime.fromisoformat(rotated["previous_expires_at"])
    assert expires > datetime.now(UTC)

    await create_project(stack, "During")
    [during] = await receiver.wait_for(lambda r: len(r) >= 1)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    verify(hook["secret"], during)
    verify(rotated["secret"], during)

    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    await create_project(stack, "After")
    after = (await receiver.wait_for(lambda r: len(r) >= 2))[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    verify(rotated["secret"], after)


async def test_replay_resends_the_matching_events_since_a_time(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers()
    before = datetime.now(UTC) - timedelta(seconds=1)
    await create_project(hooks, "Old news")  # before the endpoint existed
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    await create_project(hooks, "Fresh")
    first = await receiver.wait_for(lambda r: len(r) >= 1)
    assert [r.payload["data"]["name"] for r in first] == ["Fresh"]

    resp = await hooks.client.post(
        f"/v1/webhooks/{hook['id']}/replay",
        json={"since": before.isoformat()},
        headers=hooks.auth(),
    )
    assert resp.status == 202, await resp.text()
    got = await receiver.wait_for(lambda r: len(r) >= 3)
    names = sorted(r.payload["data"]["name"] for r in got)
    assert names == ["Fresh", "Fresh", "Old news"]
    # The event sent twice kept its webhook-id: receivers dedupe on it.
    fresh = [r.webhook_id for r in got if r.payload["data"]["name"] == "Fresh"]
    assert fresh[0] == fresh[1]

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    resp = await hooks.client.post(
        f"/v1/webhooks/{hook['id']}/replay", json={"since": future}, headers=hooks.auth()
    )
    assert resp.status == 422
    assert (await _error(resp))["details"]["field"] == "$.since"


async def test_a_deleted_endpoint_is_sent_nothing_more(hooks: Stack, receivers: Receivers) -> None:
    receiver = await receivers()
    marker = await receivers()
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    resp = await hooks.client.delete(f"/v1/webhooks/{hook['id']}", headers=hooks.auth())
    assert resp.status == 204
    await create_webhook(hooks, marker.url, ["project.created"])
    await create_project(hooks, "Nobody listens")
    await marker.wait_for(lambda r: len(r) >= 1)
    assert receiver.requests == []
    resp = await hooks.client.get(f"/v1/webhooks/{hook['id']}", headers=hooks.auth())
    assert resp.status == 404


async def test_another_organizations_webhooks_answer_404_everywhere(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers()
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    await create_project(hooks, "Mine")
    await receiver.wait_for(lambda r: len(r) >= 1)
    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "succeeded")

    theirs = await hooks.outsider()
    wid, did = hook["id"], delivery["id"]
    for method, path, body in [
        ("GET", f"/v1/webhooks/{wid}", None),
        ("PATCH", f"/v1/webhooks/{wid}", {"active": False}),
        ("DELETE", f"/v1/webhooks/{wid}", None),
        ("POST", f"/v1/webhooks/{wid}/test", None),
        ("POST", f"/v1/webhooks/{wid}/rotate-secret", None),
        ("POST", f"/v1/webhooks/{wid}/replay", {"since": "2026-01-01T00:00:00Z"}),
        ("GET", f"/v1/webhooks/{wid}/deliveries", None),
        ("POST", f"/v1/webhooks/deliveries/{did}/redeliver", None),
        ("GET", f"/v1/organizations/{hooks.org_id}/webhooks", None),
    ]:
        resp = await hooks.client.request(method, path, json=body, headers=theirs)
        assert resp.status == 404, (method, path, resp.status)
    resp = await hooks.client.get("/v1/webhooks", headers=theirs)
    assert (await resp.json())["items"] == []
    assert len(receiver.requests) == 1


async def test_a_retried_create_replays_the_secret_that_is_not_kept_in_clear(
    hooks: Stack, receivers: Receivers
) -> None:
    import asyncpg

    receiver = await receivers()
    body = {"url": receiver.url, "events": ["project.created"]}
    headers = {**hooks.auth(), "Idempotency-Key": "create-hook-1"}
    first = await hooks.client.post("/v1/webhooks", json=body, headers=headers)
    again = await hooks.client.post("/v1/webhooks", json=body, headers=headers)
    assert first.status == again.status == 201
    assert again.headers.get("Idempotency-Replayed") == "true"
    secret = (await first.json())["secret"]
    assert (await again.json())["secret"] == secret
    listed = await (await hooks.client.get("/v1/webhooks", headers=hooks.auth())).json()
    assert len(listed["items"]) == 1  # one endpoint, not two

    conn = await asyncpg.connect(hooks.suite.database_url)
    try:
        stored = await conn.fetch("SELECT body FROM gateway.idempotency_keys")
    finally:
        await conn.close()
    assert stored and all(secret.encode() not in bytes(r["body"]) for r in stored)
