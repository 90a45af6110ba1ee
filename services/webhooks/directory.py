"""Every endpoint, in memory, kept current from the endpoints stream.

The dispatcher and the delivery worker look endpoints up for every event; a
read-model query each time would put Postgres on the hot path. The directory
follows `webhook.*` with an ordered consumer instead, and `sync()` waits until
it holds everything recorded before the call: an endpoint created before an
event is always known when that event is fanned out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from libs.events import meta_from_headers
from libs.eventstore import EventStore
from services.webhooks.decider import WebhookState, evolve_webhook
from services.webhooks.events import CODECS, ENDPOINTS

log = structlog.get_logger("webhooks.directory")


class Directory:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.position = 0
        self._hooks: dict[str, WebhookState] = {}
        # The stream sequence of each endpoint's last event: its version.
        self._versions: dict[str, int] = {}
        self._by_org: dict[str, set[str]] = {}
        self._advanced = asyncio.Event()
        self._sub: Any = None
        store.register(ENDPOINTS)

    async def start(self) -> None:
        self._sub = await self.store.js.subscribe(
            self.store.subject("webhook", "*"),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=self._on_msg,
        )
        await self.sync()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
        try:
            event = CODECS["webhook"].decode(msg.data, meta.event_type, meta.schema_version)
        except Exception:
            log.exception("undecodable_webhook_event", subject=msg.subject)
        else:
            hook_id = meta.aggregate_id
            state = evolve_webhook(
                self._hooks.get(hook_id, WebhookState()), event, meta.occurred_at
            )
            self._hooks[hook_id] = state
            self._versions[hook_id] = msg.metadata.sequence.stream
            if state.organization_id:
                self._by_org.setdefault(state.organization_id, set()).add(hook_id)
        self.position = msg.metadata.sequence.stream
        self._advanced.set()

    async def sync(self, timeout: float = 5.0) -> None:
        """Until every endpoint event recorded before this call has been applied."""
        target = await self.store.last_sequence(ENDPOINTS.context)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < target:
            self._advanced.clear()
            if self.position >= target:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"endpoint directory at {self.position}, stream at {target}")
            try:
                await asyncio.wait_for(self._advanced.wait(), timeout=remaining)
            except TimeoutError:
                continue

    def get(self, webhook_id: str) -> WebhookState | None:
        return self._hooks.get(webhook_id)

    def version(self, webhook_id: str) -> int:
        return self._versions.get(webhook_id, 0)

    def of_organization(self, organization_id: str) -> list[WebhookState]:
        return [self._hooks[h] for h in self._by_org.get(organization_id, ())]
