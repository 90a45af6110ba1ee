"""Two writers racing on one aggregate cannot both win."""

from __future__ import annotations

import asyncio

import nats
import pytest

from libs.eventstore import ConcurrencyError, EventStore
from services.auth.events import STREAM, UserPasswordChanged
from tests.conftest import Stack


async def test_appends_at_one_version_have_exactly_one_winner(stack: Stack) -> None:
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        store.register(STREAM)
        from libs.aggregate import load_state
        from services.auth.handlers import USERS

        _, version = await load_state(store, USERS, stack.admin_id)
        attempts = [
            store.append(
                "user",
                stack.admin_id,
                [UserPasswordChanged(password_hash=f"h{i}")],
                expected_version=version,
            )
            for i in range(10)
        ]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        winners = [r for r in results if isinstance(r, int)]
        losers = [r for r in results if isinstance(r, ConcurrencyError)]
        assert len(winners) == 1 and len(losers) == 9
        loaded = await store.load("user", stack.admin_id, USERS.codec)
        assert sum(isinstance(r.event, UserPasswordChanged) for r in loaded.events) == 1
    finally:
        await nc.close()


@pytest.mark.parametrize("replicas", [1, 2])
async def test_concurrent_requests_for_one_thing_create_it_once(
    stack: Stack, replicas: int
) -> None:
    if replicas == 2:
        await stack.start_auth(run_projection=False)
    body = {"email": "twin@example.com", "password": "s3cret-pass", "name": "Twin"}
    responses = await asyncio.gather(
        *(stack.client.post("/v1/users", json=body, headers=stack.auth()) for _ in range(8))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [409] * 7, statuses
    user = await next(r for r in responses if r.status == 201).json()
    org_id = await _new_org(stack)
    adds = await asyncio.gather(
        *(
            stack.client.post(
                f"/v1/organizations/{org_id}/members",
                json={"user_id": user["id"], "role": "viewer"},
                headers=stack.auth(),
            )
            for _ in range(6)
        )
    )
    assert sorted(r.status for r in adds) == [201] + [409] * 5


async def _new_org(stack: Stack) -> str:
    resp = await stack.client.post(
        "/v1/organizations", json={"name": "Racers"}, headers=stack.auth()
    )
    org: str = (await resp.json())["id"]
    return org
