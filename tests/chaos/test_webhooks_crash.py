"""SIGKILL of the webhooks service during a burst: every event still reaches every endpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

from libs.messaging import CommandBus
from libs.testing import Suite
from tests.conftest import Stack
from tests.integration.webhooks.conftest import Receivers, create_project, create_webhook

EVENTS = 120


async def _spawn(suite: Suite) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        **suite.environ(),
        "DEPLOYFORGE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DEPLOYFORGE_WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5,0.5,0.5,0.5",
        "DEPLOYFORGE_LOG_FORMAT": "json",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.webhooks.main",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_answering(bus: CommandBus) -> None:
    for _ in range(300):
        if await bus.ping("webhooks", timeout=0.2):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the webhooks service never answered")


async def test_sigkill_during_a_burst_delivers_every_event_to_every_endpoint(
    stack: Stack, receivers: Receivers
) -> None:
    from gateway import keys

    bus = CommandBus(stack.client.server.app[keys.NC], namespace=stack.suite.namespace)
    process = await _spawn(stack.suite)
    try:
        await _until_answering(bus)
        # One fast receiver, one that takes its time: both must end up with everything.
        fast = await receivers()
        slow = await receivers(lambda _: (200, {}, 0.05))
        await create_webhook(stack, fast.url, ["project.created"])
        await create_webhook(stack, slow.url, ["project.created"])

        names = [f"Burst {i}" for i in range(EVENTS)]
        burst = asyncio.create_task(_create_all(stack, names))
        await fast.wait_for(lambda r: len(r) >= 20, timeout=60)
        assert not burst.done(), "the kill must land mid-burst"
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await asyncio.sleep(0.3)
        process = await _spawn(stack.suite)
        await burst

        for receiver in (fast, slow):
            await receiver.wait_for(
                lambda r: {x.payload["data"]["name"] for x in r} >= set(names), timeout=90
            )
            # Duplicates only for attempts in flight at the kill: few, and same webhook-id.
            per_id = Counter(r.webhook_id for r in receiver.requests)
            assert len(per_id) == EVENTS
            duplicates = sum(n - 1 for n in per_id.values())
            assert duplicates <= 32, duplicates
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()


async def _create_all(stack: Stack, names: list[str]) -> None:
    for name in names:
        await create_project(stack, name)
