"""The webhooks context's rules as pure functions: decide returns events, evolve folds them.

Two aggregates: the endpoint (`webhook.<id>`) and the delivery of one event to
one endpoint (`delivery.<id>`). No I/O, no clock, no randomness here: handlers
and the delivery worker pass them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from libs.errors import Conflict, NotFound
from libs.events import Event
from libs.principal import Principal, require
from services.webhooks.events import (
    DeliveryAbandoned,
    DeliveryAttempted,
    DeliveryExhausted,
    DeliveryRequeued,
    DeliveryScheduled,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookFailing,
    WebhookRecovered,
    WebhookReplayRequested,
    WebhookSecretRotated,
    WebhookUpdated,
)
from services.webhooks.schedule import next_attempt_at

# --- endpoint -----------------------------------------------------------------------------


class WebhookState(msgspec.Struct, frozen=True, kw_only=True):
    webhook_id: str | None = None
    organization_id: str | None = None
    url: str = ""
    events: tuple[str, ...] = ()
    active: bool = True
    rate_limit: int | None = None
    secret_sealed: str = ""
    previous_sealed: str | None = None
    previous_expires_at: datetime | None = None
    failing_since: datetime | None = None
    disabled_reason: str | None = None
    created_at: datetime | None = None
    deleted: bool = False

    @property
    def exists(self) -> bool:
        return self.webhook_id is not None and not self.deleted

    def secrets_at(self, now: datetime) -> list[str]:
        """The sealed secrets that sign a delivery made at `now`: the current one, and the
        one it replaced while that is still in its grace period."""
        sealed = [self.secret_sealed]
        if self.previous_sealed and self.previous_expires_at and now < self.previous_expires_at:
            sealed.append(self.previous_sealed)
        return sealed


def evolve_webhook(state: WebhookState, event: Event, at: datetime | None = None) -> WebhookState:
    """Fold one event; `at` is when it was recorded (the creation time of an endpoint)."""
    replace = msgspec.structs.replace
    match event:
        case WebhookCreated():
            return WebhookState(
                webhook_id=event.webhook_id,
                organization_id=event.organization_id,
                url=event.url,
                events=tuple(event.events),
                active=event.active,
                rate_limit=event.rate_limit,
                secret_sealed=event.secret_sealed,
                created_at=at,
            )
        case WebhookUpdated():
            changes: dict[str, Any] = dict(event.changes)
            if "events" in changes:
                changes["events"] = tuple(changes["events"])
            if changes.get("active") is True:
                # Enabling an endpoint again starts it with a clean slate.
                changes |= {"disabled_reason": None, "failing_since": None}
            known = {k: v for k, v in changes.items() if k in WebhookState.__struct_fields__}
            return replace(state, **known)
        case WebhookSecretRotated():
            return replace(
                state,
                secret_sealed=event.secret_sealed,
                previous_sealed=event.previous_sealed,
                previous_expires_at=event.previous_expires_at,
            )
        case WebhookFailing():
            return replace(state, failing_since=event.since)
        case WebhookRecovered():
            return replace(state, failing_since=None)
        case WebhookDisabled():
            return replace(state, active=False, disabled_reason=event.reason)
        case WebhookDeleted():
            return replace(state, deleted=True, active=False)
    return state


def require_webhook(state: WebhookState, actor: Principal, scope: str) -> None:
    if not state.exists:
        raise NotFound("webhook not found")
    require(actor, scope, state.organization_id)


def decide_create(state: WebhookState, actor: Principal, created: WebhookCreated) -> list[Event]:
    require(actor, "admin", created.organization_id)
    if state.webhook_id is not None:
        raise Conflict("webhook already exists")
    return [created]


def decide_update(state: WebhookState, actor: Principal, changes: dict[str, Any]) -> list[Event]:
    require_webhook(state, actor, "admin")
    changed = {k: v for k, v in changes.items() if getattr(state, k, None) != _as_state(k, v)}
    return [WebhookUpdated(changes=changed)] if changed else []


def _as_state(field: str, value: Any) -> Any:
    return tuple(value) if field == "events" else value


def decide_rotate(
    state: WebhookState, actor: Principal, new_sealed: str, now: datetime, grace: timedelta
) -> list[Event]:
    require_webhook(state, actor, "admin")
    return [
        WebhookSecretRotated(
            secret_sealed=new_sealed,
            previous_sealed=state.secret_sealed,
            previous_expires_at=now + grace,
        )
    ]


def decide_delete(state: WebhookState, actor: Principal) -> list[Event]:
    require_webhook(state, actor, "admin")
    return [WebhookDeleted()]


def decide_replay(
    state: WebhookState, actor: Principal, replay_id: str, since: datetime
) -> list[Event]:
    require_webhook(state, actor, "admin")
    return [WebhookReplayRequested(replay_id=replay_id, since=since)]


def decide_attempt_failed(
    state: WebhookState, now: datetime, disable_after: timedelta
) -> list[Event]:
    """A failed attempt: the start of a failing streak, or the end of the endpoint's patience."""
    if not state.exists or not state.active:
        return []
    if state.failing_since is None:
        return [WebhookFailing(since=now)]
    if now - state.failing_since >= disable_after:
        days = disable_after.total_seconds() / 86400
        return [WebhookDisabled(reason=f"every delivery failed for {days:g} days")]
    return []


def decide_attempt_succeeded(state: WebhookState) -> list[Event]:
    return [WebhookRecovered()] if state.exists and state.failing_since is not None else []


def decide_gone(state: WebhookState) -> list[Event]:
    if not state.exists or not state.active:
        return []
    return [WebhookDisabled(reason="the endpoint answered 410 Gone")]


# --- delivery -----------------------------------------------------------------------------

PENDING = "pending"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
EXHAUSTED = "exhausted"
ABANDONED = "abandoned"
FINAL = frozenset({SUCCEEDED, EXHAUSTED, ABANDONED})


class DeliveryState(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: str | None = None
    webhook_id: str = ""
    organization_id: str = ""
    event_id: str = ""
    event_type: str = ""
    body: str = ""
    status: str = PENDING
    attempts: int = 0
    # Attempts made before the current round (a requeue starts a new round).
    round_start: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    # Why it was last scheduled or requeued (None: a new event).
    reason: str | None = None


def evolve_delivery(state: DeliveryState, event: Event) -> DeliveryState:
    replace = msgspec.structs.replace
    match event:
        case DeliveryScheduled():
            scheduled = DeliveryState(
                delivery_id=event.delivery_id,
                webhook_id=event.webhook_id,
                organization_id=event.organization_id,
                event_id=event.event_id,
                event_type=event.event_type,
                body=event.body,
                reason=event.reason,
            )
            if event.first_attempt is None:
                return scheduled
            return evolve_delivery(scheduled, event.first_attempt)
        case DeliveryAttempted():
            if event.succeeded:
                status = SUCCEEDED
            else:
                status = RETRYING if event.next_attempt_at is not None else state.status
            return replace(
                state,
                status=status,
                attempts=event.attempt,
                next_attempt_at=event.next_attempt_at,
                last_error=None if event.succeeded else event.error,
            )
        case DeliveryRequeued():
            return replace(
                state,
                status=PENDING,
                round_start=state.attempts,
                next_attempt_at=None,
                reason=event.reason,
            )
        case DeliveryExhausted():
            return replace(state, status=EXHAUSTED, next_attempt_at=None)
        case DeliveryAbandoned():
            return replace(state, status=ABANDONED, next_attempt_at=None)
    return state


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one HTTP attempt came to."""

    attempted_at: datetime
    status_code: int | None = None
    latency_ms: float = 0.0
    response_excerpt: str = ""
    error: str | None = None
    retry_after: timedelta | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def decide_outcome(
    state: DeliveryState, outcome: Outcome, schedule: Sequence[float], *, jitter: float
) -> list[Event]:
    """Record an attempt and decide what follows: nothing, a retry, or the end."""
    if state.delivery_id is None or state.status in FINAL:
        return []
    attempt = state.attempts + 1
    due = None
    if not outcome.succeeded and not outcome.gone:
        due = next_attempt_at(
            schedule,
            attempt - state.round_start,
            outcome.attempted_at,
            jitter=jitter,
            retry_after=outcome.retry_after,
        )
    attempted = DeliveryAttempted(
        attempt=attempt,
        attempted_at=outcome.attempted_at,
        succeeded=outcome.succeeded,
        status_code=outcome.status_code,
        latency_ms=outcome.latency_ms,
        response_excerpt=outcome.response_excerpt,
        error=outcome.error,
        next_attempt_at=due,
    )
    if outcome.succeeded or due is not None:
        return [attempted]
    if outcome.gone:
        return [attempted, DeliveryAbandoned(reason="the endpoint answered 410 Gone")]
    return [
        attempted,
        DeliveryExhausted(
            webhook_id=state.webhook_id,
            event_id=state.event_id,
            event_type=state.event_type,
            attempts=attempt,
            last_error=outcome.error,
        ),
    ]


def decide_prompt(
    scheduled: DeliveryScheduled,
    outcome: Outcome,
    schedule: Sequence[float],
    *,
    jitter: float,
) -> list[Event]:
    """A new delivery whose first attempt was made before it was recorded: one
    `delivery.scheduled` carrying that attempt, and what the attempt decided beyond
    it (the end of the schedule, or the endpoint gone)."""
    state = evolve_delivery(DeliveryState(), scheduled)
    attempted, *after = decide_outcome(state, outcome, schedule, jitter=jitter)
    assert isinstance(attempted, DeliveryAttempted)
    return [msgspec.structs.replace(scheduled, first_attempt=attempted), *after]


def decide_requeue(state: DeliveryState, reason: str, *, once: bool = False) -> list[Event]:
    """Send it again. A reason given `once` (a replay's id) requeues a delivery at most
    once: a replay resumed after a crash skips what it had already done."""
    if state.delivery_id is None:
        raise NotFound("delivery not found")
    if state.status == PENDING:
        return []  # an attempt is already on its way
    if once and state.reason == reason:
        return []
    return [DeliveryRequeued(reason=reason)]


def decide_abandon(state: DeliveryState, reason: str) -> list[Event]:
    if state.delivery_id is None or state.status in FINAL:
        return []
    return [DeliveryAbandoned(reason=reason)]
