"""One vocabulary: after every deployment event, the API (read model), the
aggregate, the WebSocket and webhook payloads say the same status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.msg import Msg

from gateway.routes.live import describe
from libs.database import connect
from libs.events import Event, EventMeta, Recorded, event_type, meta_to_headers
from libs.projections import create_tables
from libs.testing import Suite
from services.deploy.decider import DeploymentState, evolve_deployment
from services.deploy.events import (
    CODECS,
    DeploymentCancelled,
    DeploymentCreated,
    DeploymentDispatched,
    DeploymentFailed,
    DeploymentQueued,
    DeploymentRolledBack,
    DeploymentStarted,
    DeploymentSucceeded,
    StepFinished,
    StepStarted,
)
from services.deploy.projection import DeployProjection
from services.deploy.status import STATUS_AFTER
from services.webhooks.payloads import DeploymentFacts, translate

CREATED = DeploymentCreated(
    deployment_id="dep_1",
    organization_id="org_1",
    project_id="prj_1",
    service_id="svc_1",
    environment_id="env_1",
    ref="main",
    strategy="blue-green",
)
START = [
    CREATED,
    DeploymentQueued(position=1),
    DeploymentDispatched(),
    DeploymentStarted(agent_id="a"),
]
RUN = [StepStarted(name="build"), StepFinished(name="build", state="success")]
LIVES: dict[str, list[Event]] = {
    "succeeded-then-rolled-back": [
        *START,
        *RUN,
        DeploymentSucceeded(release_id="rel_1"),
        DeploymentRolledBack(by_deployment_id="dep_2"),
    ],
    "failed": [*START, *RUN, DeploymentFailed(reason="boom", step="build")],
    "cancelled-while-queued": [CREATED, DeploymentQueued(position=2), DeploymentCancelled()],
}


def test_every_deployment_event_type_has_a_status_and_is_exercised() -> None:
    assert set(STATUS_AFTER) == set(CODECS["deployment"].types)
    exercised = {event_type(e) for life in LIVES.values() for e in life}
    assert exercised == set(STATUS_AFTER)


def _recorded(event: Event, seq: int) -> Recorded[Event]:
    meta = EventMeta(
        event_id=f"evt_{seq}",
        event_type=event_type(event),
        aggregate="deployment",
        aggregate_id="dep_1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seq),
        organization_id="org_1",
    )
    return Recorded(meta=meta, event=event, seq=seq)


def _websocket_status(recorded: Recorded[Event]) -> str:
    msg = Msg(
        _client=None,  # type: ignore[arg-type]
        subject="deployment.dep_1",
        data=CODECS["deployment"].encode(recorded.event),
        headers=meta_to_headers(recorded.meta),
    )
    described = describe(msg, "")
    assert described is not None
    return described[0].status


def _webhook_status(recorded: Recorded[Event]) -> str | None:
    facts = DeploymentFacts(
        deployment_id="dep_1",
        organization_id="org_1",
        project_id="prj_1",
        service_id="svc_1",
        environment_id="env_1",
        ref="main",
        strategy="blue-green",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    public = translate(recorded, facts)
    if public is None:  # not delivered to webhooks (deployment.dispatched)
        return None
    status: str = public.data["status"]
    return status


@pytest.mark.parametrize("life", sorted(LIVES))
async def test_api_aggregate_websocket_and_webhooks_agree(suite: Suite, life: str) -> None:
    projection = DeployProjection()
    conn = await connect(suite.database_url)  # with the json codecs the runner uses
    try:
        async with conn.transaction():
            await create_tables(conn, projection, "deploy_vocabulary")
        state = DeploymentState()
        for seq, event in enumerate(LIVES[life], start=1):
            recorded = _recorded(event, seq)
            async with conn.transaction():
                await conn.execute("SET LOCAL search_path TO deploy_vocabulary")
                await projection.apply(conn, recorded)
            api = await conn.fetchval(
                "SELECT status FROM deploy_vocabulary.deployments WHERE id = 'dep_1'"
            )
            state = evolve_deployment(state, event)
            said = {
                "api": api,
                "aggregate": state.status,
                "websocket": _websocket_status(recorded),
            }
            webhook = _webhook_status(recorded)
            if webhook is not None:
                said["webhook"] = webhook
            assert set(said.values()) == {STATUS_AFTER[event_type(event)]}, (event, said)
    finally:
        await conn.close()
