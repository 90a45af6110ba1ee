"""Limits that must hold across gateway replicas: rate limits, idempotency, consistency."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import Stack


async def test_rate_limit_is_shared_by_every_replica(stack: Stack) -> None:
    first = await stack.add_gateway(rate_limit_per_minute=5)
    second = await stack.add_gateway(rate_limit_per_minute=5)
    fresh = await stack.login("admin@example.com", "correct horse battery staple")
    session = stack.auth(fresh["access_token"])
    statuses = []
    for client in (first, second, first, second, first):
        resp = await client.get("/v1/auth/verify", headers=session)
        statuses.append(resp.status)
        assert resp.headers["X-RateLimit-Limit"] == "5"
    assert statuses == [200] * 5
    resp = await second.get("/v1/auth/verify", headers=session)
    assert resp.status == 429
    body = await resp.json()
    assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert int(resp.headers["X-RateLimit-Reset"]) > time.time()
    # Another credential has its own budget.
    other = await stack.login("admin@example.com", "correct horse battery staple")
    ok = await first.get("/v1/auth/verify", headers=stack.auth(other["access_token"]))
    assert ok.status == 200


async def test_locally_counted_hits_still_add_up_across_replicas(stack: Stack) -> None:
    # With a limit of 100 most hits are counted locally and flushed in batches.
    first = await stack.add_gateway(rate_limit_per_minute=100)
    second = await stack.add_gateway(rate_limit_per_minute=100)
    fresh = await stack.login("admin@example.com", "correct horse battery staple")
    session = stack.auth(fresh["access_token"])
    statuses = [
        (await client.get("/v1/auth/verify", headers=session)).status
        for _ in range(50)
        for client in (first, second)
    ]
    assert statuses == [200] * 100
    for client in (first, second):
        resp = await client.get("/v1/auth/verify", headers=session)
        assert resp.status == 429
        assert resp.headers["X-RateLimit-Remaining"] == "0"


async def test_health_probes_are_not_rate_limited(stack: Stack) -> None:
    strict = await stack.add_gateway(anonymous_rate_limit_per_minute=1)
    for _ in range(3):
        assert (await strict.get("/healthz")).status == 200
    assert (await strict.get("/v1/auth/jwks.json")).status == 200


async def test_idempotency_key_replays_the_first_response(stack: Stack) -> None:
    headers = {**stack.auth(), "Idempotency-Key": "create-acme-1"}
    first = await stack.client.post("/v1/organizations", json={"name": "Acme"}, headers=headers)
    assert first.status == 201
    created = await first.json()
    again = await stack.client.post("/v1/organizations", json={"name": "Acme"}, headers=headers)
    assert again.status == 201
    assert again.headers["Idempotency-Replayed"] == "true"
    assert await again.json() == created
    orgs = await (await stack.client.get("/v1/organizations", headers=stack.auth())).json()
    assert [o["name"] for o in orgs["items"]].count("Acme") == 1
    changed = await stack.client.post("/v1/organizations", json={"name": "Other"}, headers=headers)
    assert changed.status == 422
    assert (await changed.json())["error"]["details"]["field"] == "Idempotency-Key"


async def test_concurrent_retries_with_one_key_create_once(stack: Stack) -> None:
    second = await stack.add_gateway()
    headers = {**stack.auth(), "Idempotency-Key": "race-1"}
    responses = await asyncio.gather(
        *(
            client.post("/v1/organizations", json={"name": "Race"}, headers=headers)
            for client in (stack.client, second, stack.client, second)
        )
    )
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    orgs = await (await stack.client.get("/v1/organizations", headers=stack.auth())).json()
    assert [o["name"] for o in orgs["items"]].count("Race") == 1


async def test_consistency_token_gives_read_your_writes_on_another_replica(
    stack: Stack,
) -> None:
    reader = await stack.add_gateway()
    resp = await stack.client.post(
        "/v1/users",
        json={"email": "fresh@example.com", "password": "s3cret-pass", "name": "Fresh"},
        headers=stack.auth(),
    )
    assert resp.status == 201
    user = await resp.json()
    resp = await stack.client.patch(
        f"/v1/organizations/{stack.org_id}/members/{user['id']}",
        json={"role": "deployer"},
        headers=stack.auth(),
    )
    token = resp.headers["X-Consistency-Token"]
    assert token.startswith("auth:")
    members = await reader.get(
        f"/v1/organizations/{stack.org_id}/members",
        headers={**stack.auth(), "X-Consistency-Token": token},
    )
    assert "X-Consistency-Stale" not in members.headers
    roles = {m["user_id"]: m["role"] for m in (await members.json())["items"]}
    assert roles[user["id"]] == "deployer"
    bad = await reader.get(
        "/v1/users/me", headers={**stack.auth(), "X-Consistency-Token": "nonsense"}
    )
    assert bad.status == 422


async def test_revoked_token_stops_working_on_every_replica(stack: Stack) -> None:
    replicas = [stack.client, await stack.add_gateway(), await stack.add_gateway()]
    issued = await (
        await stack.client.post(
            "/v1/tokens", json={"name": "soon-gone", "scopes": ["read"]}, headers=stack.auth()
        )
    ).json()
    key = {"X-API-Key": issued["token"]}
    for client in replicas:  # every replica has it cached now
        assert (await client.get("/v1/users/me", headers=key)).status == 200
    session = await stack.login("admin@example.com", "correct horse battery staple")
    bearer = stack.auth(session["access_token"])
    for client in replicas:
        assert (await client.get("/v1/users/me", headers=bearer)).status == 200

    assert (
        await stack.client.delete(f"/v1/tokens/{issued['id']}", headers=stack.auth())
    ).status == 204
    assert (await stack.client.post("/v1/auth/logout", headers=bearer)).status == 204
    for client in replicas:
        for headers in (key, bearer):
            for _ in range(100):
                if (await client.get("/v1/users/me", headers=headers)).status == 401:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("a replica still accepts a revoked credential")


async def test_idempotency_keys_are_forgotten_after_their_retention(stack: Stack) -> None:
    import asyncpg

    conn = await asyncpg.connect(stack.suite.database_url)
    try:
        await conn.execute(
            "INSERT INTO gateway.idempotency_keys (scope, key, request_hash, created_at)"
            " VALUES ('cred:x', 'old', 'h', now() - interval '25 hours'),"
            " ('cred:x', 'fresh', 'h', now())"
        )
        await stack.add_gateway()  # its sweeper runs at start, then hourly
        for _ in range(100):
            keys = {r["key"] for r in await conn.fetch("SELECT key FROM gateway.idempotency_keys")}
            if "old" not in keys:
                break
            await asyncio.sleep(0.05)
        assert keys == {"fresh"}
    finally:
        await conn.close()
