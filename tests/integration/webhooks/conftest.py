"""A stack with the webhooks service running, and helpers for its API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Stack
from tests.receivers import Receivers, verify

__all__ = ["Receivers", "verify"]


@pytest.fixture
async def hooks(stack: Stack) -> Stack:
    """The stack with the webhooks service (loopback allowed, retries compressed)."""
    await stack.start_webhooks()
    return stack


async def create_webhook(
    stack: Stack, url: str, events: list[str], **fields: Any
) -> dict[str, Any]:
    resp = await stack.client.post(
        "/v1/webhooks", json={"url": url, "events": events, **fields}, headers=stack.auth()
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def deliveries(stack: Stack, webhook_id: str, **query: str) -> list[dict[str, Any]]:
    resp = await stack.client.get(
        f"/v1/webhooks/{webhook_id}/deliveries", params=query, headers=stack.auth()
    )
    assert resp.status == 200, await resp.text()
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def until_delivery(
    stack: Stack, webhook_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    """Poll the deliveries read model until one delivery satisfies `predicate`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [d for d in await deliveries(stack, webhook_id) if predicate(d)]
        if found:
            return found[0]
        if loop.time() > deadline:
            raise AssertionError(f"no such delivery: {await deliveries(stack, webhook_id)}")
        await asyncio.sleep(0.1)


async def create_project(stack: Stack, name: str) -> dict[str, Any]:
    resp = await stack.client.post("/v1/projects", json={"name": name}, headers=stack.auth())
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body
