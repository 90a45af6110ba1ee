"""One tenant's bad event never stops the read models of the others.

Events already in a stream (from a version that did not check its input) are
applied with the offending characters replaced, the same way in a replay; an
event that cannot be applied at all stops its projection at that sequence,
visibly, until an operator skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import structlog
from nats.js.api import Header

from deployforge.projection_admin import run_projections
from libs.events import EventMeta, meta_to_headers, utcnow
from libs.eventstore import EventStore
from libs.ids import new_id
from libs.projections import ProjectionRunner, checkpoint
from libs.replay import replay
from services.auth.projection import AuthProjection
from services.deploy.projection import DeployProjection
from tests.conftest import Stack


async def _publish_raw(
    stack: Stack, context: str, aggregate: str, aggregate_id: str, event_type: str, body: bytes
) -> int:
    """Append an event as an older version would have: no check at the door."""
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        meta = EventMeta(
            event_id=new_id("evt"),
            event_type=event_type,
            aggregate=aggregate,
            aggregate_id=aggregate_id,
            occurred_at=utcnow(),
            organization_id=stack.org_id,
        )
        headers = meta_to_headers(meta)
        ack = await store.js.publish(
            store.subject(aggregate, aggregate_id), body, headers=headers, stream=None
        )
        assert ack.stream == store.stream_name(context)
        assert Header.MSG_ID.value in headers
        return int(ack.seq)
    finally:
        await nc.close()


async def _rows(dsn: str, query: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def _wait_checkpoint(stack: Stack, name: str, position: int) -> None:
    conn = await asyncpg.connect(stack.suite.database_url)
    try:
        for _ in range(1000):
            if await checkpoint(conn, name) >= position:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{name} never reached {position}")
    finally:
        await conn.close()


async def _names(stack: Stack) -> list[str]:
    resp = await stack.client.get("/v1/projects", headers=stack.auth())
    assert resp.status == 200, await resp.text()
    return [p["name"] for p in (await resp.json())["items"]]


async def test_old_events_with_unstorable_text_are_applied_and_replay_identically(
    stack: Stack,
) -> None:
    project_id = new_id("prj")
    body = msgspec.json.encode(
        {
            "type": "project.created",
            "project_id": project_id,
            "organization_id": stack.org_id,
            "name": "a\x00b",
            "slug": "ab",
            "description": "nul \x00 and more \x00",
        }
    )
    assert b"\\u0000" in body
    seq = await _publish_raw(stack, "deploy", "project", project_id, "project.created", body)
    org_id = new_id("org")
    org_body = msgspec.json.encode(
        {
            "type": "organization.created",
            "organization_id": org_id,
            "name": "Nul\x00Org",
            "slug": "nul-org",
            "created_by": stack.admin_id,
        }
    )
    auth_seq = await _publish_raw(
        stack, "auth", "organization", org_id, "organization.created", org_body
    )

    # A later write of the same tenant is readable: the projection went past it.
    resp = await stack.client.post("/v1/projects", json={"name": "after"}, headers=stack.auth())
    assert resp.status == 201, await resp.text()
    token = resp.headers["X-Consistency-Token"]
    read = await stack.client.get(
        "/v1/projects", headers={**stack.auth(), "X-Consistency-Token": token}
    )
    assert "X-Consistency-Stale" not in read.headers
    names = [p["name"] for p in (await read.json())["items"]]
    assert "after" in names
    assert "a\ufffdb" in names  # replaced, deterministically

    await _wait_checkpoint(stack, "auth", auth_seq)
    orgs = await _rows(
        stack.suite.database_url,
        f"SELECT name FROM auth.organizations WHERE id = '{org_id}'",  # noqa: S608
    )
    assert orgs == [{"name": "Nul\ufffdOrg"}]

    await _wait_checkpoint(stack, "deploy", seq)
    query = "SELECT * FROM deploy.projects ORDER BY id"
    live = await _rows(stack.suite.database_url, query)
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        await replay(DeployProjection(), stack.suite.database_url, store)
    finally:
        await nc.close()
    assert await _rows(stack.suite.database_url, query) == live


async def test_an_event_that_cannot_be_applied_stalls_visibly_until_skipped(
    stack: Stack, monkeypatch: Any
) -> None:
    await stack.start_all()  # every service runs: /readyz answers for the read models
    await stack.client.post("/v1/projects", json={"name": "before"}, headers=stack.auth())
    assert (await stack.client.get("/readyz")).status == 200
    # Not a string where the read model needs one: no replacement can save it.
    body = msgspec.json.encode(
        {
            "type": "project.created",
            "project_id": "prj_bad",
            "organization_id": stack.org_id,
            "name": 123,
            "slug": "bad",
        }
    )
    with structlog.testing.capture_logs() as logs:
        seq = await _publish_raw(stack, "deploy", "project", "prj_bad", "project.created", body)
        resp = await stack.client.post("/v1/projects", json={"name": "after"}, headers=stack.auth())
        assert resp.status == 201, await resp.text()

        for _ in range(500):
            ready = await stack.client.get("/readyz")
            checks = (await ready.json())["checks"]
            if "projection:deploy" in checks:
                break
            await asyncio.sleep(0.02)
        assert ready.status == 503
        stream = f"{stack.suite.namespace.upper()}_DEPLOY"
        assert checks["projection:deploy"] == f"stalled at {stream} sequence {seq}"
        metrics = await (await stack.client.get("/metrics")).text()
        assert f'deployforge_projection_stalled_sequence{{projection="deploy"}} {seq}.0' in metrics
        assert "after" not in await _names(stack)
        await asyncio.sleep(1.0)  # stalled, not spinning: still one line after a while

    stalled = [e for e in logs if e["event"] == "projection_stalled"]
    assert len(stalled) == 1, logs
    assert stalled[0]["log_level"] == "error"
    assert (stalled[0]["projection"], stalled[0]["stream"], stalled[0]["seq"]) == (
        "deploy",
        stream,
        seq,
    )
    assert not [e for e in logs if e["event"] in ("projection_failed", "projection_restarting")]

    monkeypatch.setenv("DEPLOYFORGE_DATABASE_URL", stack.suite.database_url)
    assert await run_projections("skip", "deploy", None, "malformed by v0.1", Path("-")) == 0
    for _ in range(1000):
        if "after" in await _names(stack):
            break
        await asyncio.sleep(0.02)
    assert "after" in await _names(stack)
    assert (await stack.client.get("/readyz")).status == 200

    # A replay passes over the skipped event too: the same rows.
    query = "SELECT * FROM deploy.projects ORDER BY id"
    live = await _rows(stack.suite.database_url, query)
    nc = await nats.connect(stack.suite.nats_url)
    try:
        await replay(
            DeployProjection(),
            stack.suite.database_url,
            EventStore(nc.jetstream(), namespace=stack.suite.namespace),
        )
    finally:
        await nc.close()
    assert await _rows(stack.suite.database_url, query) == live


async def test_an_idle_projection_is_silent_and_keeps_its_consumer(stack: Stack) -> None:
    """Idle fetches are the normal case. nats-py raises the builtin TimeoutError
    when a pull's deadline passes between its two requests, which the runner took
    for a failure: it logged a warning and re-created its consumer. Short fetches
    make that window common."""
    nc = await nats.connect(stack.suite.nats_url)
    stop = asyncio.Event()
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        projection = AuthProjection()
        projection.name = "auth_idle_probe"
        projection.schema = "auth_idle_probe"
        runner = ProjectionRunner(projection, stack.suite.database_url, store, fetch_timeout=0.01)
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(runner.run(stop))
            await asyncio.wait_for(runner.leading.wait(), timeout=10)
            stream = store.stream_name("auth")
            created = (await store.js.consumer_info(stream, runner.durable)).created
            await asyncio.sleep(4)
            assert (await store.js.consumer_info(stream, runner.durable)).created == created
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    finally:
        stop.set()
        await nc.close()
    noisy = [
        e for e in logs if logging.getLevelNamesMapping()[e["log_level"].upper()] >= logging.WARNING
    ]
    assert noisy == []
    assert [e["event"] for e in logs] == ["projection_leading"]


async def test_unstorable_text_never_reaches_an_event(stack: Stack) -> None:
    """The store itself refuses it (a bug in a handler cannot poison a stream)."""
    from libs.errors import ValidationFailed
    from services.deploy.events import ProjectCreated

    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        before = await store.last_sequence("deploy")
        event = ProjectCreated(project_id="prj_x", organization_id="o", name="ok", slug="s")
        bad = ProjectCreated(project_id="prj_x", organization_id="o", name="x\x00", slug="s")
        with contextlib.suppress(ValidationFailed):
            await store.append("project", "prj_x", [event, bad], expected_version=0)
            raise AssertionError("appended")
        assert await store.last_sequence("deploy") == before  # not even the good one
    finally:
        await nc.close()
