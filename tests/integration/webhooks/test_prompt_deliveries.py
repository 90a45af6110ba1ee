"""Prompt deliveries: the dispatcher's first attempt, recorded with the delivery in one event."""

from __future__ import annotations

import asyncio

import nats

from libs.eventstore import EventStore
from services.webhooks.events import CODECS, DELIVERIES, DeliveryAttempted, DeliveryScheduled
from tests.conftest import Stack
from tests.integration.webhooks.conftest import (
    Receivers,
    create_project,
    create_webhook,
    deliveries,
    until_delivery,
)


async def _history(stack: Stack, delivery_id: str) -> list[object]:
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        store.register(DELIVERIES)
        loaded = await store.load("delivery", delivery_id, CODECS["delivery"])
        return [r.event for r in loaded.events]
    finally:
        await nc.close()


async def test_a_healthy_endpoint_hears_first_and_the_delivery_is_one_event(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers()
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    await create_project(hooks, "Prompt")
    [request] = await receiver.wait_for(lambda r: len(r) >= 1)
    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "succeeded")
    assert delivery["id"] == request.webhook_id
    assert [a["status_code"] for a in delivery["attempts"]] == [200]

    [scheduled] = await _history(hooks, delivery["id"])
    assert isinstance(scheduled, DeliveryScheduled)
    assert isinstance(scheduled.first_attempt, DeliveryAttempted)
    assert scheduled.first_attempt.succeeded and scheduled.first_attempt.attempt == 1


async def test_after_a_failed_prompt_attempt_the_worker_retries_it(
    hooks: Stack, receivers: Receivers
) -> None:
    receiver = await receivers(lambda n: (500 if n == 0 else 200, {}, 0.0))
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    await create_project(hooks, "First fails")
    got = await receiver.wait_for(lambda r: len(r) >= 2)
    assert got[0].webhook_id == got[1].webhook_id
    delivery = await until_delivery(hooks, hook["id"], lambda d: d["status"] == "succeeded")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    scheduled, retried = await _history(hooks, delivery["id"])
    assert isinstance(scheduled, DeliveryScheduled) and scheduled.first_attempt is not None
    assert isinstance(retried, DeliveryAttempted) and retried.attempt == 2


async def test_a_failing_endpoint_gets_its_new_deliveries_from_the_worker(
    hooks: Stack, receivers: Receivers
) -> None:
    # The first four requests fail (the whole compressed schedule of one delivery).
    receiver = await receivers(lambda n: (500 if n < 4 else 200, {}, 0.0))
    hook = await create_webhook(hooks, receiver.url, ["project.created"])
    await create_project(hooks, "Fails")
    await receiver.wait_for(lambda r: len(r) >= 1)
    # The endpoint's last attempt failed: the next event is recorded, not attempted
    # by the dispatcher, and the worker delivers it.
    await create_project(hooks, "Handed over")
    got = await receiver.wait_for(
        lambda r: any(x.payload["data"]["name"] == "Handed over" for x in r)
    )
    handed_id = next(x.webhook_id for x in got if x.payload["data"]["name"] == "Handed over")
    handed = await until_delivery(
        hooks, hook["id"], lambda d: d["id"] == handed_id and d["status"] == "succeeded"
    )
    scheduled, *attempts = await _history(hooks, handed["id"])
    assert isinstance(scheduled, DeliveryScheduled) and scheduled.first_attempt is None
    assert attempts and all(isinstance(a, DeliveryAttempted) for a in attempts)


async def test_a_graceful_stop_lets_a_prompt_attempt_finish_and_be_recorded(
    stack: Stack, receivers: Receivers
) -> None:
    stop = await stack.start_webhooks()
    task = stack._tasks[-1]
    receiver = await receivers(lambda _: (200, {}, 2.5))  # answers slowly
    hook = await create_webhook(stack, receiver.url, ["project.created"])
    await create_project(stack, "In flight at the stop")
    await receiver.wait_for(lambda r: len(r) >= 1)
    stop.set()  # while the receiver is still answering
    await task
    await stack.start_webhooks()
    delivery = await until_delivery(stack, hook["id"], lambda d: d["status"] == "succeeded")
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    await asyncio.sleep(1.5)  # a redelivered event would be attempted again by now
    assert len(receiver.requests) == 1


async def test_an_endpoint_that_hangs_all_of_a_sudden_does_not_keep_its_events(
    stack: Stack, receivers: Receivers
) -> None:
    await stack.start_webhooks(webhook_timeout_seconds=20, webhook_retry_schedule="0,30")
    # Fast for five requests, then every answer takes 20 s: its lane still looks fast.
    hanging = await receivers(lambda n: (200, {}, 0.0 if n < 5 else 20.0))
    hook = await create_webhook(stack, hanging.url, ["project.created"])
    for i in range(5):
        await create_project(stack, f"Fine {i}")
    await hanging.wait_for(lambda r: len(r) >= 5)
    for i in range(30):
        await create_project(stack, f"Hung {i}")
    # The 8 attempts under way hang; every other event is recorded for the worker
    # within about a second, instead of waiting in the lane behind them for minutes.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    recorded: list[dict[str, object]] = []
    while loop.time() < deadline:
        recorded = await deliveries(stack, hook["id"], limit="100")
        if len(recorded) >= 35 - 8:
            break
        await asyncio.sleep(0.1)
    assert len(recorded) >= 35 - 8, len(recorded)
    waiting = [d for d in recorded if d["status"] == "pending"]
    assert len(waiting) >= 30 - 8
