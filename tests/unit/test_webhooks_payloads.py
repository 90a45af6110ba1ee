"""What receivers are sent: the catalog, the schedule, the payloads and their signatures."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs.events import Event, EventMeta, Recorded
from services.deploy import events as deploy
from services.webhooks import catalog, signing
from services.webhooks.payloads import body, facts_of, public_url, translate
from services.webhooks.schedule import next_attempt_at, parse_retry_after, parse_schedule

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def recorded(aggregate: str, aggregate_id: str, event: Event, at: datetime = T0) -> Recorded[Event]:
    meta = EventMeta(
        event_id=f"evt_{aggregate_id}_{type(event).__name__}",
        event_type=str(type(event).__struct_config__.tag),
        aggregate=aggregate,
        aggregate_id=aggregate_id,
        occurred_at=at,
        organization_id="org_1",
    )
    return Recorded(meta=meta, event=event, seq=1)


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("*", True),
        ("deployment.*", True),
        ("deployment.completed", True),
        ("ssl.expiring", True),
        ("deployment.succeeded", False),  # internal name: receivers know it as completed
        ("nope.*", False),
        ("deployment", False),
        ("**", False),
    ],
)
def test_subscription_patterns(pattern: str, ok: bool) -> None:
    assert (catalog.filter_error(pattern) is None) is ok


def test_matching() -> None:
    assert catalog.matches(["deployment.*"], "deployment.failed")
    assert not catalog.matches(["deployment.failed"], "deployment.completed")
    assert catalog.matches(["*"], "project.created")
    assert not catalog.matches(["deploymen.*"], "deployment.failed")
    assert catalog.matches(["deployment.failed"], "webhook.ping")  # a ping is always sent


def test_deployment_completed_carries_what_the_seeds_show() -> None:
    created = deploy.DeploymentCreated(
        deployment_id="dpl_1",
        organization_id="org_1",
        project_id="prj_1",
        service_id="svc_1",
        environment_id="env_1",
        ref="main",
        strategy="blue-green",
    )
    facts = facts_of(recorded("deployment", "dpl_1", created))
    assert facts is not None
    done = deploy.DeploymentSucceeded(commit_hash="abc123", release_id="rel_1")
    public = translate(recorded("deployment", "dpl_1", done, T0 + timedelta(seconds=42)), facts)
    assert public is not None and public.type == "deployment.completed"
    assert public.data["duration_seconds"] == 42
    assert public.data["commit_hash"] == "abc123"
    assert public.data["project_id"] == "prj_1" and public.data["status"] == "succeeded"
    sent = msgspec.json.decode(body(public))
    assert set(sent) == {"type", "timestamp", "data", "metadata"}
    assert sent["metadata"] == {"event_id": public.event_id, "correlation_id": None}
    assert sent["timestamp"].startswith("2026-11-01T12:00:42")
    # Internal bookkeeping is not announced.
    assert translate(recorded("deployment", "dpl_1", deploy.DeploymentDispatched()), facts) is None


def test_secrets_never_reach_a_payload() -> None:
    env = deploy.EnvironmentCreated(
        environment_id="env_1",
        organization_id="org_1",
        name="prod",
        provider="aws",
        environment_type="production",
        credentials_sealed="v1.SEALED-CREDENTIALS",
    )
    var = deploy.EnvVarSet(key="TOKEN", secret=True, value_sealed="v1.SEALED-VALUE")
    plain = deploy.EnvVarSet(key="MODE", secret=False, value="plain-value")
    service = deploy.ServiceCreated(
        service_id="svc_1",
        organization_id="org_1",
        project_id="prj_1",
        name="web",
        repository_url="https://deploy:ghp_TOKEN@github.com/acme/web.git",
    )
    update = deploy.ServiceUpdated(changes={"repository_url": "https://u:pw@example.com/r.git"})
    for event, agg in [
        (env, "environment"),
        (var, "service"),
        (plain, "service"),
        (service, "service"),
        (update, "service"),
    ]:
        public = translate(recorded(agg, "x_1", event), None)
        assert public is not None
        text = body(public)
        for secret in ("SEALED", "plain-value", "ghp_TOKEN", "u:pw"):
            assert secret not in text
    assert public_url("https://u:pw@example.com/r.git") == "https://example.com/r.git"


def test_schedule_and_retry_after() -> None:
    schedule = parse_schedule("0, 5, 300")
    assert schedule == (0.0, 5.0, 300.0)
    assert next_attempt_at(schedule, 1, T0, jitter=-1) == T0 + timedelta(seconds=4.5)
    assert next_attempt_at(schedule, 3, T0, jitter=0) is None
    assert parse_retry_after("120", T0) == timedelta(seconds=120)
    assert parse_retry_after("Sun, 01 Nov 2026 12:01:00 GMT", T0) == timedelta(seconds=60)
    assert parse_retry_after("soon", T0) is None
    capped = next_attempt_at(schedule, 1, T0, jitter=0, retry_after=timedelta(days=9))
    assert capped == T0 + timedelta(hours=24)
    with pytest.raises(ValueError, match="negative"):
        parse_schedule("0,-1")


def test_signatures_verify_with_the_reference_library_for_every_secret() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    payload = b'{"type":"webhook.ping","timestamp":"2026-11-01T12:00:00Z","data":{}}'
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([new, old], "dlv_1", now, payload)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(payload, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(payload, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(payload + b" ", headers)


@pytest.mark.parametrize(
    ("secret", "ok"),
    [
        (signing.generate_secret(), True),
        ("whsec_" + base64.b64encode(b"x" * 24).decode(), True),
        ("whsec_" + base64.b64encode(b"y" * 25).decode().rstrip("="), True),  # unpadded
        ("whsec_" + base64.b64encode(b"x" * 8).decode(), False),
        ("whsec_not*base64", False),
        ("plain-text-secret", False),
    ],
)
def test_secret_format(secret: str, ok: bool) -> None:
    assert (signing.secret_error(secret) is None) is ok
    if ok:  # the reference library verifies what we sign with it
        body = b"{}"
        headers = signing.headers([secret], "dlv_x", int(datetime.now(UTC).timestamp()), body)
        Webhook(secret).verify(body, headers)
