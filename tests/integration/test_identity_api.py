"""Identity through the gateway: sessions, users, organizations, API tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json() if resp.status != 204 else None


async def _create_user(
    stack: Stack, email: str, role: str = "viewer", org: str | None = None, token: str | None = None
) -> dict[str, Any]:
    body = {"email": email, "password": "s3cret-pass", "name": email.split("@")[0], "role": role}
    if org:
        body["organization_id"] = org
    resp = await stack.client.post("/v1/users", json=body, headers=stack.auth(token))
    user: dict[str, Any] = await _json(resp, 201)
    return user


async def test_password_grant_form_logs_in_like_fastdeploy_clients(stack: Stack) -> None:
    resp = await stack.client.post(
        "/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    body = await _json(resp, 200)
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = await stack.client.get("/v1/users/me", headers=stack.auth(body["access_token"]))
    assert (await _json(me, 200))["email"] == ADMIN_EMAIL


async def test_access_token_verifies_against_published_jwks(stack: Stack) -> None:
    jwks = await _json(await stack.client.get("/v1/auth/jwks.json"), 200)
    header = jwt.get_unverified_header(stack.admin_token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
    claims = jwt.decode(
        stack.admin_token, key=jwt.PyJWK(key), algorithms=["EdDSA"], audience="deployforge"
    )
    assert claims["sub"] == stack.admin_id
    verify = await _json(await stack.client.get("/v1/auth/verify", headers=stack.auth()), 200)
    assert verify["valid"] is True and verify["user_id"] == stack.admin_id


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(stack: Stack) -> None:
    first = await stack.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    second = await _json(
        await stack.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        200,
    )
    assert second["refresh_token"] != first["refresh_token"]
    # The stolen first token is replayed: refused, and the family dies with it.
    reused = await stack.client.post(
        "/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert (await _json(reused, 401))["error"]["code"] == "AUTHENTICATION_REQUIRED"
    rotated = await stack.client.post(
        "/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    await _json(rotated, 401)
    await _eventually_status(stack, second["access_token"], 401)


async def _eventually_status(stack: Stack, token: str, status: int, client: Any = None) -> None:
    target = client or stack.client
    for _ in range(200):
        resp = await target.get("/v1/users/me", headers=stack.auth(token))
        if resp.status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never answered {status}")


async def test_logout_ends_the_session(stack: Stack) -> None:
    session = await stack.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    resp = await stack.client.post("/v1/auth/logout", headers=stack.auth(session["access_token"]))
    await _json(resp, 204)
    await _eventually_status(stack, session["access_token"], 401)
    refused = await stack.client.post(
        "/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    await _json(refused, 401)
    # Other sessions of the same user are untouched.
    await _eventually_status(stack, stack.admin_token, 200)


async def test_admin_creates_a_user_who_can_log_in_with_their_role(stack: Stack) -> None:
    user = await _create_user(stack, "dev@example.com", role="deployer")
    assert user["organizations"][0]["role"] == "deployer"
    tokens = await stack.login("dev@example.com", "s3cret-pass")
    me = await _json(
        await stack.client.get("/v1/users/me", headers=stack.auth(tokens["access_token"])), 200
    )
    assert me["id"] == user["id"] and me["default_organization_id"] == stack.org_id
    # A deployer is not an admin: creating users is refused.
    resp = await stack.client.post(
        "/v1/users",
        json={"email": "x@example.com", "password": "s3cret-pass", "name": "x"},
        headers=stack.auth(tokens["access_token"]),
    )
    assert (await _json(resp, 403))["error"]["code"] == "AUTHORIZATION_DENIED"
    duplicate = await stack.client.post(
        "/v1/users",
        json={"email": "DEV@example.com", "password": "s3cret-pass", "name": "d"},
        headers=stack.auth(),
    )
    body = await _json(duplicate, 409)
    assert body["error"]["details"]["field"] == "$.email"


async def test_members_are_listed_and_roles_changed(stack: Stack) -> None:
    user = await _create_user(stack, "viewer@example.com")
    members = await _json(
        await stack.client.get(f"/v1/organizations/{stack.org_id}/members", headers=stack.auth()),
        200,
    )
    assert {m["user_id"]: m["role"] for m in members["items"]} == {
        stack.admin_id: "owner",
        user["id"]: "viewer",
    }
    changed = await stack.client.patch(
        f"/v1/organizations/{stack.org_id}/members/{user['id']}",
        json={"role": "admin"},
        headers=stack.auth(),
    )
    assert (await _json(changed, 200))["role"] == "admin"
    last_owner = await stack.client.patch(
        f"/v1/organizations/{stack.org_id}/members/{stack.admin_id}",
        json={"role": "viewer"},
        headers=stack.auth(),
    )
    await _json(last_owner, 409)
    removed = await stack.client.delete(
        f"/v1/organizations/{stack.org_id}/members/{user['id']}", headers=stack.auth()
    )
    await _json(removed, 204)


async def test_a_member_removed_reaches_nothing_from_the_answer_on(stack: Stack) -> None:
    # The gateway caches who belongs where: removing a member must not leave a window
    # in which their cached membership still opens the organization.
    user = await _create_user(stack, "leaver@example.com", role="deployer")
    token = (await stack.login("leaver@example.com", "s3cret-pass"))["access_token"]
    projects = f"/v1/organizations/{stack.org_id}/projects"
    member = f"/v1/organizations/{stack.org_id}/members"
    for _ in range(5):
        # given a member whose access was just used (and so cached)
        assert (await stack.client.get(projects, headers=stack.auth(token))).status == 200
        # when they are removed
        removed = await stack.client.delete(f"{member}/{user['id']}", headers=stack.auth())
        await _json(removed, 204)
        # then their very next request reaches nothing
        resp = await stack.client.get(projects, headers=stack.auth(token))
        assert resp.status in (403, 404), await resp.text()
        added = await stack.client.post(
            member, json={"user_id": user["id"], "role": "deployer"}, headers=stack.auth()
        )
        await _json(added, 201)


async def test_another_organizations_ids_answer_404(stack: Stack) -> None:
    outsider = await _create_user(stack, "outsider@example.com", role="owner")
    outsider_tokens = await stack.login("outsider@example.com", "s3cret-pass")
    # The outsider founds their own organization; the admin's is not theirs to see.
    created = await stack.client.post(
        "/v1/organizations",
        json={"name": "Acme Corp"},
        headers=stack.auth(outsider_tokens["access_token"]),
    )
    acme = await _json(created, 201)
    assert acme["slug"] == "acme-corp" and acme["role"] == "owner"
    viewer = await _create_user(stack, "plain@example.com")
    plain = await stack.login("plain@example.com", "s3cret-pass")
    for path in (
        f"/v1/organizations/{acme['id']}",
        f"/v1/organizations/{acme['id']}/members",
        f"/v1/users?organization_id={acme['id']}",
    ):
        resp = await stack.client.get(path, headers=stack.auth(plain["access_token"]))
        assert (await _json(resp, 404))["error"]["code"] == "RESOURCE_NOT_FOUND", path
    added = await stack.client.post(
        f"/v1/organizations/{acme['id']}/members",
        json={"user_id": viewer["id"], "role": "viewer"},
        headers=stack.auth(plain["access_token"]),
    )
    await _json(added, 404)
    assert outsider["id"] != viewer["id"]


async def test_api_token_is_shown_once_works_both_ways_and_dies_when_revoked(
    stack: Stack,
) -> None:
    resp = await stack.client.post(
        "/v1/tokens",
        json={"name": "ci", "scopes": ["read"], "expires_in_days": 30},
        headers=stack.auth(),
    )
    issued = await _json(resp, 201)
    token = issued["token"]
    assert token.startswith("dfp_") and issued["prefix"] == token[:12]
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": token}):
        me = await stack.client.get("/v1/users/me", headers=headers)
        assert (await _json(me, 200))["id"] == stack.admin_id
    listed = await _json(await stack.client.get("/v1/tokens", headers=stack.auth()), 200)
    assert [t["id"] for t in listed["items"]] == [issued["id"]]
    assert token not in str(listed)
    # A read-only token cannot write.
    refused = await stack.client.post(
        "/v1/tokens", json={"name": "x", "scopes": ["read"]}, headers={"X-API-Key": token}
    )
    body = await _json(refused, 403)
    assert body["error"]["details"]["required_scope"] == "write"
    deleted = await stack.client.delete(f"/v1/tokens/{issued['id']}", headers=stack.auth())
    await _json(deleted, 204)
    await _eventually_status(stack, token, 401)


async def test_an_api_token_reaches_only_its_own_organization(stack: Stack) -> None:
    second = await (
        await stack.client.post("/v1/organizations", json={"name": "Second"}, headers=stack.auth())
    ).json()
    issued = await (
        await stack.client.post(
            "/v1/tokens",
            json={"name": "scoped", "scopes": ["read"], "organization_id": stack.org_id},
            headers=stack.auth(),
        )
    ).json()
    key = {"X-API-Key": issued["token"]}
    own = await stack.client.get(f"/v1/organizations/{stack.org_id}/members", headers=key)
    assert own.status == 200
    other = await stack.client.get(f"/v1/organizations/{second['id']}/members", headers=key)
    assert other.status == 404
    listed = await (await stack.client.get("/v1/organizations", headers=key)).json()
    assert [o["id"] for o in listed["items"]] == [stack.org_id]


async def test_token_scopes_cannot_exceed_the_role(stack: Stack) -> None:
    await _create_user(stack, "reader@example.com", role="viewer")
    reader = await stack.login("reader@example.com", "s3cret-pass")
    resp = await stack.client.post(
        "/v1/tokens",
        json={"name": "sneaky", "scopes": ["deploy"]},
        headers=stack.auth(reader["access_token"]),
    )
    body = await _json(resp, 403)
    assert body["error"]["details"]["field"] == "$.scopes"


async def test_lists_page_through_every_item_once(stack: Stack) -> None:
    for n in range(3):
        await _create_user(stack, f"member{n}@example.com")
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await _json(
            await stack.client.get(
                f"/v1/organizations/{stack.org_id}/members{query}", headers=stack.auth()
            ),
            200,
        )
        assert len(page["items"]) <= 2
        seen += [m["user_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and len(set(seen)) == 4
    users = await _json(await stack.client.get("/v1/users?limit=3", headers=stack.auth()), 200)
    assert len(users["items"]) == 3 and users["next_cursor"]
    bad = await stack.client.get("/v1/users?limit=0", headers=stack.auth())
    assert (await _json(bad, 422))["error"]["details"]["field"] == "$.limit"
    bad = await stack.client.get("/v1/tokens?cursor=%%%", headers=stack.auth())
    assert (await _json(bad, 422))["error"]["details"]["field"] == "cursor"


async def test_users_me_is_cached_yet_shows_each_change_read_with_its_token(stack: Stack) -> None:
    # /users/me is served from a cache the auth events invalidate; a read carrying a
    # change's consistency token never gets an entry read before that change.
    for n in range(5):
        before = await _json(await stack.client.get("/v1/users/me", headers=stack.auth()), 200)
        resp = await stack.client.post(
            "/v1/organizations", json={"name": f"Cached {n}"}, headers=stack.auth()
        )
        created = await _json(resp, 201)
        token = resp.headers["X-Consistency-Token"]
        assert token.startswith("auth:")
        after = await _json(
            await stack.client.get(
                "/v1/users/me", headers={**stack.auth(), "X-Consistency-Token": token}
            ),
            200,
        )
        assert created["id"] not in {m["organization_id"] for m in before["organizations"]}
        assert {"organization_id": created["id"], "role": "owner"}.items() <= next(
            m for m in after["organizations"] if m["organization_id"] == created["id"]
        ).items()
