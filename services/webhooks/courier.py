"""The courier: one signed POST of a delivery through its endpoint's lane.

Shared by the dispatcher, which makes a delivery's first attempt as soon as
the event arrives, and the delivery worker, which makes the attempts that
follow (retries, redeliveries, first attempts the dispatcher handed over).

Each endpoint has a lane: its own concurrency and rate limit, and a waiting
line whose length follows how fast the endpoint answers, so a slow or dead
endpoint never holds up the others' deliveries. The courier also records the
endpoint's health, on transitions only (`webhook.failing`, `.recovered`,
`.disabled`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import msgspec
import structlog
from opentelemetry import trace

from libs.crypto import SecretBox
from libs.events import EventContext
from libs.eventstore import ConcurrencyError, EventStore
from libs.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from services.webhooks import decider as d
from services.webhooks import signing
from services.webhooks.directory import Directory
from services.webhooks.sender import Sender

log = structlog.get_logger("webhooks.courier")
tracer = trace.get_tracer("deployforge.webhooks")

SECRET_PURPOSE = "webhook-secret"
ACTOR = "system:webhooks"

# A message waits in a lane's line for about this long at most (well inside the
# consumer's ack wait); beyond that it goes back to the stream for a while.
LINE_SECONDS = 20.0
# The dispatcher attempts at once only where the wait is expected to be shorter
# than this (the event it holds is unacknowledged meanwhile); otherwise it hands
# the delivery to the worker.
PROMPT_LINE_SECONDS = 5.0
# ...and it waits for a slot this long at most: an endpoint that hangs all of a
# sudden (its speed estimate still fast) cannot keep the dispatcher's events.
PROMPT_WAIT_SECONDS = 1.0
# A lane whose every slot is held by an attempt older than this is stalled.
STALL_SECONDS = 1.0


class DeliveryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    schedule: tuple[float, ...]
    # An endpoint whose every attempt failed for this long is disabled.
    disable_after: timedelta
    concurrency: int = 8
    # Deliveries per second per endpoint when the endpoint sets none (None: no limit).
    default_rate_limit: int | None = None


class Lane:
    """One endpoint's share of the service: concurrency, pace and a waiting line whose
    length follows how fast the endpoint answers."""

    def __init__(self, concurrency: int, rate_limit: int | None) -> None:
        self.concurrency = concurrency
        self.rate_limit = rate_limit
        self.slots = asyncio.Semaphore(concurrency)
        self.waiting = 0
        # Recent seconds per attempt (moving average), from a cautious start.
        self.latency = 0.1
        # Whether the last attempt failed: a failing endpoint gets no prompt attempts.
        self.failing = False
        self._next_start = 0.0
        # When each attempt under way started (monotonic), by its own token.
        self._running: dict[object, float] = {}

    def _per_second(self) -> float:
        per_second = self.concurrency / max(self.latency, 0.001)
        if self.rate_limit:
            per_second = min(per_second, self.rate_limit)
        return per_second

    @property
    def capacity(self) -> int:
        """How many may wait: as many as the endpoint gets through in LINE_SECONDS."""
        return max(self.concurrency, min(10_000, int(self._per_second() * LINE_SECONDS)))

    @property
    def full(self) -> bool:
        return self.waiting >= self.capacity

    @property
    def stalled(self) -> bool:
        """Every slot is held, by attempts that all started over STALL_SECONDS ago."""
        if len(self._running) < self.concurrency:
            return False
        return time.monotonic() - max(self._running.values()) > STALL_SECONDS

    @property
    def prompt(self) -> bool:
        """Whether an attempt started now would begin within PROMPT_LINE_SECONDS."""
        if self.failing or self.stalled:
            return False
        return self.waiting < max(self.concurrency, self._per_second() * PROMPT_LINE_SECONDS)

    def observe(self, seconds: float, succeeded: bool) -> None:
        self.latency = 0.8 * self.latency + 0.2 * seconds
        self.failing = not succeeded

    async def enter(self, wait: float | None = None) -> object | None:
        """Take a slot (waiting `wait` seconds at most; None: as long as it takes) and
        keep to the rate limit; a token for `leave`, or None if no slot came in time."""
        self.waiting += 1
        try:
            if wait is None:
                await self.slots.acquire()
            else:
                await asyncio.wait_for(self.slots.acquire(), wait)
        except TimeoutError:
            return None
        finally:
            self.waiting -= 1
        if self.rate_limit:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.rate_limit
            if start > now:
                try:
                    await asyncio.sleep(start - now)
                except BaseException:
                    self.slots.release()  # cancelled while pacing: the slot was never used
                    raise
        token = object()
        self._running[token] = time.monotonic()
        return token

    def leave(self, token: object) -> None:
        del self._running[token]
        self.slots.release()


class Courier:
    def __init__(
        self,
        store: EventStore,
        directory: Directory,
        box: SecretBox,
        sender: Sender,
        policy: DeliveryPolicy,
    ) -> None:
        self.store = store
        self.directory = directory
        self.box = box
        self.sender = sender
        self.policy = policy
        self._lanes: dict[str, Lane] = {}
        self._secrets: dict[str, str] = {}

    def lane(self, hook: d.WebhookState) -> Lane:
        assert hook.webhook_id is not None
        rate = hook.rate_limit or self.policy.default_rate_limit
        lane = self._lanes.get(hook.webhook_id)
        if lane is None or lane.rate_limit != rate:
            lane = Lane(self.policy.concurrency, rate)
            self._lanes[hook.webhook_id] = lane
        return lane

    def prompt(self, hook: d.WebhookState) -> bool:
        """Whether the dispatcher may attempt a new delivery to `hook` at once."""
        return hook.active and hook.failing_since is None and self.lane(hook).prompt

    async def send(self, hook: d.WebhookState, delivery_id: str, body: str) -> d.Outcome:
        """One attempt in the endpoint's lane (waiting for a slot), signed at the moment
        it starts; the lane learns the endpoint's speed from it."""
        outcome = await self.send_within(hook, delivery_id, body, None)
        assert outcome is not None
        return outcome

    async def send_within(
        self, hook: d.WebhookState, delivery_id: str, body: str, wait: float | None
    ) -> d.Outcome | None:
        """As `send`, if a slot comes within `wait` seconds; None if not (nothing sent)."""
        lane = self.lane(hook)
        token = await lane.enter(wait)
        if token is None:
            return None
        try:
            outcome = await self._post(hook, delivery_id, body)
        finally:
            lane.leave(token)
        lane.observe(outcome.latency_ms / 1000, outcome.succeeded)
        return outcome

    def _open(self, sealed: str) -> str:
        secret = self._secrets.get(sealed)
        if secret is None:
            secret = self.box.open(sealed, purpose=SECRET_PURPOSE).decode()
            self._secrets[sealed] = secret
        return secret

    async def _post(self, hook: d.WebhookState, delivery_id: str, body: str) -> d.Outcome:
        now = datetime.now(UTC)
        raw = body.encode()
        secrets = [self._open(s) for s in hook.secrets_at(now)]
        headers = signing.headers(secrets, delivery_id, int(now.timestamp()), raw)
        with tracer.start_as_current_span(
            "webhook attempt",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "deployforge.delivery_id": delivery_id,
                "deployforge.webhook_id": hook.webhook_id or "",
            },
        ) as span:
            outcome = await self.sender.post(hook.url, headers, raw)
            if outcome.status_code is not None:
                span.set_attribute("http.response.status_code", outcome.status_code)
            if not outcome.succeeded:
                span.set_status(trace.StatusCode.ERROR, outcome.error or "")
            WEBHOOK_ATTEMPTS.labels("success" if outcome.succeeded else "failure").inc()
            WEBHOOK_LATENCY.observe(outcome.latency_ms / 1000)
            # Every attempt is in the delivery log (the API); here, failures at info.
            (log.debug if outcome.succeeded else log.info)(
                "delivery_attempted" if outcome.succeeded else "delivery_attempt_failed",
                delivery_id=delivery_id,
                webhook_id=hook.webhook_id,
                status_code=outcome.status_code,
                latency_ms=round(outcome.latency_ms, 1),
                error=outcome.error,
            )
        return outcome

    async def record_health(self, hook: d.WebhookState, outcome: d.Outcome) -> None:
        """The endpoint's health events, when this outcome changes it."""
        if outcome.succeeded:
            events = d.decide_attempt_succeeded(hook)
        elif outcome.gone:
            events = d.decide_gone(hook)
        else:
            events = d.decide_attempt_failed(hook, outcome.attempted_at, self.policy.disable_after)
        if not events:
            return
        assert hook.webhook_id is not None
        try:
            await self.store.append(
                "webhook",
                hook.webhook_id,
                events,
                expected_version=self.directory.version(hook.webhook_id),
                context=EventContext(actor=ACTOR, organization_id=hook.organization_id),
            )
        except ConcurrencyError:
            pass  # the directory was behind; the next attempt decides again
