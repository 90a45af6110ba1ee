"""Read models are disposable: dropped and replayed, they come back identical."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import nats

from libs.eventstore import EventStore
from libs.projections import checkpoint
from libs.replay import replay
from services.auth.projection import AuthProjection
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack

TABLES = {
    "users": "id",
    "organizations": "id",
    "memberships": "organization_id, user_id",
    "tokens": "id",
    "sessions": "id",
    "signing_keys": "kid",
}


async def _snapshot(dsn: str) -> dict[str, list[dict[str, Any]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: [
                dict(r)
                for r in await conn.fetch(f"SELECT * FROM auth.{table} ORDER BY {order}")  # noqa: S608
            ]
            for table, order in TABLES.items()
        }
    finally:
        await conn.close()


async def _history(stack: Stack) -> None:
    """A little of everything the identity read model holds."""
    client, admin = stack.client, stack.auth()
    user = await (
        await client.post(
            "/v1/users",
            json={
                "email": "ann@example.com",
                "password": "s3cret-pass",
                "name": "Ann",
                "role": "deployer",
            },
            headers=admin,
        )
    ).json()
    org = await (
        await client.post("/v1/organizations", json={"name": "Second"}, headers=admin)
    ).json()
    await client.post(
        f"/v1/organizations/{org['id']}/members",
        json={"user_id": user["id"], "role": "viewer"},
        headers=admin,
    )
    await client.patch(
        f"/v1/organizations/{org['id']}/members/{user['id']}", json={"role": "admin"}, headers=admin
    )
    await client.delete(f"/v1/organizations/{stack.org_id}/members/{user['id']}", headers=admin)
    token = await (
        await client.post("/v1/tokens", json={"name": "t", "scopes": ["read"]}, headers=admin)
    ).json()
    await client.delete(f"/v1/tokens/{token['id']}", headers=admin)
    session = await stack.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    await client.post("/v1/auth/logout", headers=stack.auth(session["access_token"]))


async def _caught_up(stack: Stack, store: EventStore) -> int:
    target = await store.last_sequence("auth")
    conn = await asyncpg.connect(stack.suite.database_url)
    try:
        for _ in range(500):
            if await checkpoint(conn, "auth") >= target:
                return target
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise AssertionError("projection did not catch up")


async def test_dropped_read_model_replays_to_identical_rows(stack: Stack) -> None:
    await _history(stack)
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        store.register(AuthProjection.spec)
        position = await _caught_up(stack, store)
        before = await _snapshot(stack.suite.database_url)
        assert len(before["users"]) == 2 and len(before["sessions"]) >= 2
        conn = await asyncpg.connect(stack.suite.database_url)
        await conn.execute("DROP SCHEMA auth CASCADE")
        await conn.close()

        applied, replayed_to = await replay(AuthProjection(), stack.suite.database_url, store)
        assert replayed_to == position
        assert applied == position  # every event in the stream, once
        assert await _snapshot(stack.suite.database_url) == before
    finally:
        await nc.close()
    # The live projection carries on from where the replay left off.
    resp = await stack.client.post(
        "/v1/users",
        json={"email": "after@example.com", "password": "s3cret-pass", "name": "After"},
        headers=stack.auth(),
    )
    assert resp.status == 201
    assert (await resp.json())["email"] == "after@example.com"


async def test_replay_beside_a_live_model_swaps_in_without_a_gap(stack: Stack) -> None:
    await _history(stack)
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        store.register(AuthProjection.spec)
        await _caught_up(stack, store)
        before = await _snapshot(stack.suite.database_url)
        await replay(AuthProjection(), stack.suite.database_url, store)
        assert await _snapshot(stack.suite.database_url) == before
        # Reads keep working through the swap.
        me = await stack.client.get("/v1/users/me", headers=stack.auth())
        assert me.status == 200
    finally:
        await nc.close()
