"""The webhooks context's rules: given these events, when this happens, then these events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce

import msgspec
import pytest

from libs.errors import NotFound
from libs.events import Event, EventCodec
from libs.principal import Principal
from services.webhooks import decider as d
from services.webhooks.events import (
    CODECS,
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
    WebhookSecretRotated,
    WebhookUpdated,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ADMIN = Principal(user_id="usr_a", organization_id="org_1", memberships={"org_1": "admin"})
VIEWER = Principal(user_id="usr_v", organization_id="org_1", memberships={"org_1": "viewer"})
OUTSIDER = Principal(user_id="usr_o", organization_id="org_2", memberships={"org_2": "owner"})
SCHEDULE = (0.0, 5.0, 300.0)

CREATED = WebhookCreated(
    webhook_id="whk_1",
    organization_id="org_1",
    url="https://hooks.example.com/in",
    events=["deployment.*"],
    secret_sealed="sealed-1",
)


def hook(*events: Event) -> d.WebhookState:
    return reduce(lambda s, e: d.evolve_webhook(s, e, T0), events, d.WebhookState())


def delivery(*events: Event) -> d.DeliveryState:
    return reduce(d.evolve_delivery, events, d.DeliveryState())


SCHEDULED = DeliveryScheduled(
    delivery_id="dlv_1",
    webhook_id="whk_1",
    organization_id="org_1",
    event_id="evt_1",
    event_type="deployment.failed",
    body='{"type":"deployment.failed"}',
    occurred_at=T0,
)


def failed(at: datetime, status: int = 500, **extra: object) -> d.Outcome:
    return d.Outcome(attempted_at=at, status_code=status, error=f"HTTP {status}", **extra)  # type: ignore[arg-type]


# --- endpoints ----------------------------------------------------------------------------


def test_only_admins_of_the_organization_create_and_outsiders_see_nothing() -> None:
    assert d.decide_create(d.WebhookState(), ADMIN, CREATED) == [CREATED]
    with pytest.raises(NotFound):
        d.decide_create(d.WebhookState(), OUTSIDER, CREATED)
    with pytest.raises(NotFound):
        d.decide_delete(hook(CREATED), OUTSIDER)
    with pytest.raises(NotFound):
        d.decide_delete(hook(CREATED, WebhookDeleted()), ADMIN)


def test_an_update_records_only_what_changed() -> None:
    state = hook(CREATED)
    assert d.decide_update(state, ADMIN, {"url": state.url, "events": ["deployment.*"]}) == []
    assert d.decide_update(state, ADMIN, {"active": False, "events": ["*"]}) == [
        WebhookUpdated(changes={"active": False, "events": ["*"]})
    ]


def test_after_a_rotation_both_secrets_sign_until_the_grace_ends() -> None:
    state = hook(CREATED)
    [rotated] = d.decide_rotate(state, ADMIN, "sealed-2", T0, timedelta(hours=24))
    assert rotated == WebhookSecretRotated(
        secret_sealed="sealed-2",
        previous_sealed="sealed-1",
        previous_expires_at=T0 + timedelta(hours=24),
    )
    after = d.evolve_webhook(state, rotated)
    assert after.secrets_at(T0 + timedelta(hours=1)) == ["sealed-2", "sealed-1"]
    assert after.secrets_at(T0 + timedelta(hours=24)) == ["sealed-2"]


def test_failures_start_a_streak_that_disables_the_endpoint_after_the_threshold() -> None:
    five_days = timedelta(days=5)
    state = hook(CREATED)
    assert d.decide_attempt_failed(state, T0, five_days) == [WebhookFailing(since=T0)]
    failing = d.evolve_webhook(state, WebhookFailing(since=T0))
    assert d.decide_attempt_failed(failing, T0 + timedelta(days=4), five_days) == []
    [disabled] = d.decide_attempt_failed(failing, T0 + five_days, five_days)
    assert isinstance(disabled, WebhookDisabled) and "5 days" in disabled.reason
    assert d.evolve_webhook(failing, disabled).active is False
    # A success in between ends the streak.
    assert d.decide_attempt_succeeded(failing) == [WebhookRecovered()]
    assert d.decide_attempt_succeeded(state) == []


def test_410_disables_once_and_enabling_again_clears_the_reason() -> None:
    state = hook(CREATED)
    [gone] = d.decide_gone(state)
    disabled = d.evolve_webhook(state, gone)
    assert d.decide_gone(disabled) == []
    enabled = d.evolve_webhook(disabled, WebhookUpdated(changes={"active": True}))
    assert enabled.active and enabled.disabled_reason is None and enabled.failing_since is None


# --- deliveries ---------------------------------------------------------------------------


def test_a_2xx_succeeds_and_nothing_follows() -> None:
    ok = d.Outcome(attempted_at=T0, status_code=204, latency_ms=3.0)
    [attempted] = d.decide_outcome(delivery(SCHEDULED), ok, SCHEDULE, jitter=0)
    assert attempted == DeliveryAttempted(
        attempt=1, attempted_at=T0, succeeded=True, status_code=204, latency_ms=3.0
    )
    done = delivery(SCHEDULED, attempted)
    assert done.status == d.SUCCEEDED
    assert d.decide_outcome(done, ok, SCHEDULE, jitter=0) == []


def test_a_failure_schedules_the_next_attempt_with_jitter_then_exhausts() -> None:
    [first] = d.decide_outcome(delivery(SCHEDULED), failed(T0), SCHEDULE, jitter=0)
    assert isinstance(first, DeliveryAttempted)
    assert first.next_attempt_at == T0 + timedelta(seconds=5)
    [jittered] = d.decide_outcome(delivery(SCHEDULED), failed(T0), SCHEDULE, jitter=1)
    assert jittered.next_attempt_at == T0 + timedelta(seconds=5.5)  # type: ignore[attr-defined]
    state = delivery(SCHEDULED, first)
    assert state.status == d.RETRYING
    [second] = d.decide_outcome(state, failed(T0), SCHEDULE, jitter=0)
    state = d.evolve_delivery(state, second)
    third, exhausted = d.decide_outcome(state, failed(T0), SCHEDULE, jitter=0)
    assert isinstance(third, DeliveryAttempted) and third.next_attempt_at is None
    assert exhausted == DeliveryExhausted(
        webhook_id="whk_1",
        event_id="evt_1",
        event_type="deployment.failed",
        attempts=3,
        last_error="HTTP 500",
    )


def test_retry_after_is_never_undercut() -> None:
    later = failed(T0, 429, retry_after=timedelta(minutes=2))
    [attempted] = d.decide_outcome(delivery(SCHEDULED), later, SCHEDULE, jitter=0)
    assert attempted.next_attempt_at == T0 + timedelta(minutes=2)  # type: ignore[attr-defined]
    sooner = failed(T0, 503, retry_after=timedelta(seconds=1))
    [attempted] = d.decide_outcome(delivery(SCHEDULED), sooner, SCHEDULE, jitter=0)
    assert attempted.next_attempt_at == T0 + timedelta(seconds=5)  # type: ignore[attr-defined]


def test_410_abandons_without_retry_and_3xx_is_a_failure() -> None:
    attempted, abandoned = d.decide_outcome(
        delivery(SCHEDULED), failed(T0, 410), SCHEDULE, jitter=0
    )
    assert isinstance(abandoned, DeliveryAbandoned)
    assert delivery(SCHEDULED, attempted, abandoned).status == d.ABANDONED
    [redirect] = d.decide_outcome(delivery(SCHEDULED), failed(T0, 302), SCHEDULE, jitter=0)
    assert redirect.succeeded is False and redirect.next_attempt_at is not None  # type: ignore[attr-defined]


def test_a_requeue_starts_a_fresh_schedule() -> None:
    [a1] = d.decide_outcome(delivery(SCHEDULED), failed(T0), SCHEDULE, jitter=0)
    [a2] = d.decide_outcome(delivery(SCHEDULED, a1), failed(T0), SCHEDULE, jitter=0)
    a3, exhausted = d.decide_outcome(delivery(SCHEDULED, a1, a2), failed(T0), SCHEDULE, jitter=0)
    state = delivery(SCHEDULED, a1, a2, a3, exhausted)
    assert d.decide_requeue(state, "redeliver") == [DeliveryRequeued(reason="redeliver")]
    requeued = d.evolve_delivery(state, DeliveryRequeued(reason="redeliver"))
    assert requeued.status == d.PENDING and requeued.round_start == 3
    [a4] = d.decide_outcome(requeued, failed(T0), SCHEDULE, jitter=0)
    assert a4.attempt == 4  # type: ignore[attr-defined]
    assert a4.next_attempt_at == T0 + timedelta(seconds=5)  # type: ignore[attr-defined]
    # Pending already: an attempt is on its way, a second requeue adds nothing.
    assert d.decide_requeue(requeued, "redeliver") == []
    with pytest.raises(NotFound):
        d.decide_requeue(d.DeliveryState(), "redeliver")


def test_abandoning_a_finished_delivery_is_a_no_op() -> None:
    ok = d.Outcome(attempted_at=T0, status_code=200)
    done = delivery(SCHEDULED, *d.decide_outcome(delivery(SCHEDULED), ok, SCHEDULE, jitter=0))
    assert d.decide_abandon(done, "the webhook was deleted") == []
    assert d.decide_abandon(delivery(SCHEDULED), "the webhook was deleted") == [
        DeliveryAbandoned(reason="the webhook was deleted")
    ]


def test_viewers_cannot_manage_endpoints() -> None:
    from libs.errors import AuthorizationDenied

    with pytest.raises(AuthorizationDenied):
        d.decide_update(hook(CREATED), VIEWER, {"active": False})


# --- prompt deliveries (first attempt made before the delivery is recorded) ---------------


def test_a_prompt_success_is_one_event_that_folds_to_succeeded() -> None:
    ok = d.Outcome(attempted_at=T0, status_code=200, latency_ms=2.0)
    [scheduled] = d.decide_prompt(SCHEDULED, ok, SCHEDULE, jitter=0)
    assert isinstance(scheduled, DeliveryScheduled)
    assert scheduled.first_attempt == DeliveryAttempted(
        attempt=1, attempted_at=T0, succeeded=True, status_code=200, latency_ms=2.0
    )
    state = delivery(scheduled)
    assert (state.status, state.attempts, state.delivery_id) == (d.SUCCEEDED, 1, "dlv_1")


def test_a_prompt_failure_carries_the_next_attempt_and_the_worker_continues_it() -> None:
    [scheduled] = d.decide_prompt(SCHEDULED, failed(T0), SCHEDULE, jitter=0)
    assert scheduled.first_attempt.next_attempt_at == T0 + timedelta(seconds=5)  # type: ignore[attr-defined]
    state = delivery(scheduled)
    assert (state.status, state.attempts) == (d.RETRYING, 1)
    # The retry decided from the folded state is attempt 2, on the same schedule.
    [second] = d.decide_outcome(state, failed(T0), SCHEDULE, jitter=0)
    assert second.attempt == 2  # type: ignore[attr-defined]
    assert second.next_attempt_at == T0 + timedelta(seconds=300)  # type: ignore[attr-defined]


def test_a_prompt_410_is_recorded_with_its_abandonment() -> None:
    scheduled, abandoned = d.decide_prompt(SCHEDULED, failed(T0, 410), SCHEDULE, jitter=0)
    assert isinstance(abandoned, DeliveryAbandoned)
    assert delivery(scheduled, abandoned).status == d.ABANDONED


def test_a_prompt_failure_with_a_one_attempt_schedule_is_exhausted_at_once() -> None:
    scheduled, exhausted = d.decide_prompt(SCHEDULED, failed(T0), (0.0,), jitter=0)
    assert exhausted == DeliveryExhausted(
        webhook_id="whk_1",
        event_id="evt_1",
        event_type="deployment.failed",
        attempts=1,
        last_error="HTTP 500",
    )
    assert delivery(scheduled, exhausted).status == d.EXHAUSTED


def test_a_scheduled_delivery_without_a_first_attempt_still_decodes_as_before() -> None:
    codec: EventCodec[Event] = CODECS["delivery"]
    old = b'{"type":"delivery.scheduled","delivery_id":"dlv_1","webhook_id":"whk_1",'
    old += b'"organization_id":"org_1",'
    old += b'"event_id":"evt_1","event_type":"deployment.failed","body":"{}",'
    old += b'"occurred_at":"2026-11-01T12:00:00Z"}'
    event = codec.decode(old, "delivery.scheduled", 1)
    assert isinstance(event, DeliveryScheduled) and event.first_attempt is None
    assert delivery(event).status == d.PENDING


def test_a_replay_requeues_a_delivery_once_however_often_it_is_resumed() -> None:
    [attempted] = d.decide_outcome(
        delivery(SCHEDULED), d.Outcome(attempted_at=T0, status_code=200), SCHEDULE, jitter=0
    )
    done = delivery(SCHEDULED, attempted)
    [requeued] = d.decide_requeue(done, "replay rpl_1", once=True)
    again = d.evolve_delivery(delivery(SCHEDULED, attempted, requeued), attempted)
    assert again.reason == "replay rpl_1"
    assert d.decide_requeue(again, "replay rpl_1", once=True) == []
    # Another replay, or a redeliver, sends it again.
    assert d.decide_requeue(again, "replay rpl_2", once=True) == [
        DeliveryRequeued(reason="replay rpl_2")
    ]
    assert d.decide_requeue(again, "redeliver") == [DeliveryRequeued(reason="redeliver")]
    # A delivery a replay created is not requeued by that same replay.
    created = msgspec.structs.replace(SCHEDULED, reason="replay rpl_1", first_attempt=attempted)
    assert d.decide_requeue(delivery(created), "replay rpl_1", once=True) == []
