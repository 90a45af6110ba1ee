"""SIGKILL of the webhooks service during a replay: the replay is resumed, and every
event it owes reaches the endpoint, once each but for attempts in flight."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

from libs.events import EventContext
from libs.eventstore import EventStore
from libs.messaging import CommandBus
from services.deploy.events import ProjectCreated
from services.webhooks.events import DELIVERIES
from tests.chaos.test_webhooks_crash import _spawn, _until_answering
from tests.conftest import Stack
from tests.integration.webhooks.conftest import Receivers, create_webhook

EVENTS = 1500


async def test_sigkill_during_a_replay_resumes_it_and_sends_everything_once(
    stack: Stack, receivers: Receivers
) -> None:
    from gateway import keys

    nc = stack.client.server.app[keys.NC]
    bus = CommandBus(nc, namespace=stack.suite.namespace)
    store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
    store.register(DELIVERIES)
    process = await _spawn(stack.suite)
    try:
        await _until_answering(bus)
        since = datetime.now(UTC) - timedelta(seconds=1)
        # Events from before the endpoint existed: only a replay sends them.
        context = EventContext(organization_id=stack.org_id, actor="usr_chaos")
        names = [f"prj_chaos{i:05d}" for i in range(EVENTS)]
        await asyncio.gather(
            *(
                store.append(
                    "project",
                    name,
                    [
                        ProjectCreated(
                            project_id=name, organization_id=stack.org_id, name=name, slug=name
                        )
                    ],
                    expected_version=0,
                    context=context,
                )
                for name in names
            )
        )
        receiver = await receivers()
        hook = await create_webhook(stack, receiver.url, ["project.created"])
        resp = await stack.client.post(
            f"/v1/webhooks/{hook['id']}/replay",
            json={"since": since.isoformat()},
            headers=stack.auth(),
        )
        assert resp.status == 202, await resp.text()

        await receiver.wait_for(lambda r: len(r) >= 5, timeout=60)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        scheduled_at_kill = await _deliveries_recorded(store)
        assert scheduled_at_kill < EVENTS, "the kill must land mid-replay"
        process = await _spawn(stack.suite)

        await receiver.wait_for(
            lambda r: {x.payload["data"]["name"] for x in r} >= set(names), timeout=120
        )
        per_id = Counter(r.webhook_id for r in receiver.requests)
        assert len(per_id) == EVENTS
        duplicates = sum(n - 1 for n in per_id.values())
        assert duplicates <= 32, duplicates
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()


async def _deliveries_recorded(store: EventStore) -> int:
    """How many deliveries exist: the distinct subjects of the deliveries stream."""
    info = await store.js.stream_info(
        store.stream_name(DELIVERIES.context), subjects_filter=store.subject("delivery", "*")
    )
    return len(info.state.subjects or {})
