"""Deliveries to real receivers: signed, retried, and bounded the way receivers rely on."""

from __future__ import annotations

import asyncio

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import Stack
from tests.integration.webhooks.conftest import (
    Receivers,
    create_project,
    create_webhook,
    deliveries,
    until_delivery,
    verify,
)


async def test_a_subscribed_receiver_gets_signed_events_it_verifies_with_standardwebhooks(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers()
    hook = await create_webhook(hooks, receiver.url, ["project.*"], description="ci")
    assert hook["secret"].startswith("whsec_")
    assert hook["active"] is True

    project = await create_project(hooks, "Billing")
    await hooks.client.patch(
        f"/v1/projects/{project['id']}", json={"description": "money"}, headers=hooks.auth()
    )
    got = await receiver.wait_for(lambda r: len(r) >= 2)

    created, updated = verify(hook["secret"], got[0]), verify(hook["secret"], got[1])
    assert created["type"] == "project.created"
    assert created["data"] == {
        "project_id": project["id"],
        "name": "Billing",
        "slug": "billing",
        "description": "",
    }
    assert updated["type"] == "project.updated"
    assert updated["data"]["changes"] == {"description": "money"}
    assert created["timestamp"]
    assert got[0].headers["content-type"] == "application/json"
    # A different secret does not verify: the signature is real.
    other = await create_webhook(hooks, receiver.url, ["project.*"])
    with pytest.raises(WebhookVerificationError):
        verify(other["secret"], got[0])


async def test_only_subscribed_events_of_the_own_organization_are_sent(
    hooks: Stack, receivers: Receivers
) -> None:
    failed_only = await receivers()
    everything = await receivers()
    await create_webhook(hooks, failed_only.url, ["deployment.failed"])
    await create_webhook(hooks, everything.url, ["*"])
    await create_project(hooks, "Seen by one")
    await everything.wait_for(lambda r: len(r) >= 1)
    # A second organization's events never reach the first one's endpoints.
    resp = await hooks.client.post(
        "/v1/organizations", json={"name": "Other"}, headers=hooks.auth()
    )
    other_org = (await resp.json())["id"]
    resp = await hooks.client.post(
        f"/v1/organizations/{other_org}/projects", json={"name": "Elsewhere"}, headers=hooks.auth()
    )
    assert resp.status == 201
    await create_project(hooks, "Marker")
    got = await everything.wait_for(lambda r: len(r) >= 2)
    assert [r.payload["data"]["name"] for r in got] == ["Seen by one", "Marker"]
    assert failed_only.requests == []


async def test_a_receiver_that_is_down_then_up_gets_the_event_with_one_webhook_id(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers(lambda n: (503 if n < 2 else 200, {}, 0.0))
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    await create_project(hooks, "Flaky")
    got = await receiver.wait_for(lambda r: len(r) >= 3)
    assert len({r.webhook_id for r in got}) == 1
    for request in got:
        verify(hook["secret"], request)

    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "succeeded")
    assert delivery["id"] == got[0].webhook_id
    assert [a["status_code"] for a in delivery["attempts"]] == [503, 503, 200]
    assert [a["succeeded"] for a in delivery["attempts"]] == [False, False, True]
    assert delivery["attempts"][0]["next_attempt_at"] is not None
    assert delivery["attempts"][0]["response_excerpt"] == "answer 0"
    assert delivery["attempts"][0]["error"] == "HTTP 503"


async def test_a_receiver_that_never_answers_well_exhausts_the_delivery_and_others_hear_of_it(
    hooks: Stack, receivers: Receivers
) -> None:
    broken = await receivers(lambda _: (500, {}, 0.0))
    watcher = await receivers()
    hook = await create_webhook(hooks, broken.url, ["project.created"])
    await create_webhook(hooks, watcher.url, ["webhook.*"])
    await create_project(hooks, "Doomed")

    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "exhausted")
    assert len(delivery["attempts"]) == 4  # the compressed schedule: now and three retries
    assert len(broken.requests) == 4
    got = await watcher.wait_for(lambda r: len(r) >= 1)
    exhausted = got[0].payload
    assert exhausted["type"] == "webhook.delivery_exhausted"
    assert exhausted["data"]["webhook_id"] == hook["id"]
    assert exhausted["data"]["delivery_id"] == delivery["id"]
    assert exhausted["data"]["event_type"] == "project.created"
    assert exhausted["data"]["attempts"] == 4


async def test_410_disables_the_endpoint_and_announces_it(
    hooks: Stack, receivers: Receivers
) -> None:
    gone = await receivers(lambda _: (410, {}, 0.0))
    watcher = await receivers()
    hook = await create_webhook(hooks, gone.url, ["project.*"])
    await create_webhook(hooks, watcher.url, ["webhook.endpoint_disabled"])
    await create_project(hooks, "First")

    announced = await watcher.wait_for(lambda r: len(r) >= 1)
    assert announced[0].payload["type"] == "webhook.endpoint_disabled"
    assert announced[0].payload["data"]["webhook_id"] == hook["id"]
    # The announcement can outrun the endpoints read model by a few milliseconds.
    for _ in range(100):
        resp = await hooks.client.get(f"/v1/webhooks/{hook['id']}", headers=hooks.auth())
        state = await resp.json()
        if state["active"] is False:
            break
        await asyncio.sleep(0.05)
    assert state["active"] is False
    assert "410" in state["disabled_reason"]
    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "abandoned")
    assert len(delivery["attempts"]) == 1  # no retry after 410

    await create_project(hooks, "Second")
    await watcher.wait_for(lambda r: len(r) >= 1)
    assert len(gone.requests) == 1  # a disabled endpoint is sent nothing more
    # ...but a test ping: that is how one checks it before enabling it again.
    resp = await hooks.client.post(f"/v1/webhooks/{hook['id']}/test", headers=hooks.auth())
    assert resp.status == 202
    pinged = await gone.wait_for(lambda r: len(r) >= 2)
    assert pinged[1].payload["type"] == "webhook.ping"

    # Enabled again by hand, it receives what happens from then on.
    resp = await hooks.client.patch(
        f"/v1/webhooks/{hook['id']}", json={"active": True}, headers=hooks.auth()
    )
    assert (await resp.json())["disabled_reason"] is None
    gone.answer = lambda _: (200, {}, 0.0)
    await create_project(hooks, "Third")
    got = await gone.wait_for(lambda r: len(r) >= 3)
    assert got[2].payload["data"]["name"] == "Third"
    assert [r.payload["data"].get("name") for r in got].count("Second") == 0


async def test_429_with_retry_after_is_honoured(hooks: Stack, receivers: Receivers) -> None:
    receiver = await receivers(
        lambda n: (429, {"Retry-After": "2"}, 0.0) if n == 0 else (200, {}, 0)
    )
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    await create_project(hooks, "Patient")
    first, second = await receiver.wait_for(lambda r: len(r) >= 2)
    # The compressed schedule alone would retry after 0.2 s.
    assert second.at - first.at >= 1.9
    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "succeeded")
    assert delivery["attempts"][0]["status_code"] == 429


async def test_redirects_are_failures_and_are_not_followed(
    hooks: Stack, receivers: Receivers
) -> None:
    target = await receivers()
    redirecting = await receivers(lambda _: (307, {"Location": target.url}, 0.0))
    hook = await create_webhook(hooks, redirecting.url, ["project.created"])
    await create_project(hooks, "Elsewhere")
    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "exhausted")
    assert delivery["attempts"][0]["error"] == "HTTP 307: redirects are not followed"
    assert target.requests == []


async def test_a_slow_receiver_times_out_and_a_dead_one_does_not_delay_a_healthy_one(
    stack: Stack, receivers: Receivers
) -> None:
    await stack.start_webhooks(webhook_timeout_seconds=1, webhook_retry_schedule="0,30")
    stuck = await receivers(lambda _: (200, {}, 5.0))
    healthy = await receivers()
    stuck_hook = await create_webhook(stack, stuck.url, ["project.created"])
    await create_webhook(stack, healthy.url, ["project.created"])
    for i in range(40):  # far more than the stuck endpoint's lane holds
        await create_project(stack, f"Burst {i}")
    # Every event reaches the healthy receiver while the stuck one still hangs.
    await healthy.wait_for(lambda r: len(r) >= 40, timeout=30)
    assert len({r.payload["data"]["name"] for r in healthy.requests}) == 40
    timed_out = await until_delivery(
        stack, stuck_hook["id"], lambda d: bool(d["attempts"]) and d["status"] == "retrying"
    )
    assert timed_out["attempts"][0]["error"] == "timed out after 1 s"
    assert timed_out["attempts"][0]["status_code"] is None


async def test_deliveries_filter_and_redeliver_keeps_the_webhook_id(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers()
    hook = await create_webhook(hooks, receiver.url, ["project.*"])
    project = await create_project(hooks, "Again")
    await hooks.client.delete(f"/v1/projects/{project['id']}", headers=hooks.auth())
    await receiver.wait_for(lambda r: len(r) >= 2)
    delivered = await until_delivery(
        hooks, hook["id"], lambda d: d["event_type"] == "project.deleted"
    )
    only = await deliveries(hooks, hook["id"], event_type="project.created")
    assert [d["event_type"] for d in only] == ["project.created"]

    resp = await hooks.client.post(
        f"/v1/webhooks/deliveries/{delivered['id']}/redeliver", headers=hooks.auth()
    )
    assert resp.status == 202
    got = await receiver.wait_for(lambda r: len(r) >= 3)
    assert got[2].webhook_id == delivered["id"]
    original = next(r for r in got[:2] if r.webhook_id == delivered["id"])
    assert got[2].body == original.body
    again = await until_delivery(
        hooks, hook["id"], lambda d: d["id"] == delivered["id"] and len(d["attempts"]) == 2
    )
    assert again["status"] == "succeeded"

    resp = await hooks.client.post(
        "/v1/webhooks/deliveries/dlv_nosuchdelivery/redeliver", headers=hooks.auth()
    )
    assert resp.status == 404


async def test_cookies_a_receiver_sets_are_never_sent_anywhere(
    hooks: Stack, receivers: Receivers
) -> None:
    # Cookies are scoped by host, not port: one organization's receiver must not be
    # able to plant a cookie that the suite then sends to another's on the same host.
    setter = await receivers(lambda _: (200, {"Set-Cookie": "session=planted; Path=/"}, 0.0))
    other = await receivers()
    by_name = [r.url.replace("127.0.0.1", "localhost") for r in (setter, other)]
    await create_webhook(hooks, by_name[0], ["project.created"])
    await create_webhook(hooks, by_name[1], ["project.created"])
    await create_project(hooks, "One")
    await setter.wait_for(lambda r: len(r) >= 1)
    await create_project(hooks, "Two")
    await setter.wait_for(lambda r: len(r) >= 2)
    await other.wait_for(lambda r: len(r) >= 2)
    assert all("cookie" not in r.headers for r in setter.requests + other.requests)
