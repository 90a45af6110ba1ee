"""Identity end to end: HTTP request -> NATS command -> event -> read model -> HTTP read."""

from __future__ import annotations

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack


async def test_admin_logs_in_and_sees_themself(stack: Stack) -> None:
    resp = await stack.client.get("/v1/users/me", headers=stack.auth())
    assert resp.status == 200
    me = await resp.json()
    assert me["email"] == ADMIN_EMAIL
    assert me["is_superuser"] is True
    assert [o["role"] for o in me["organizations"]] == ["owner"]


async def test_wrong_password_is_401_in_the_envelope(stack: Stack) -> None:
    resp = await stack.client.post(
        "/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD + "x"}
    )
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == "AUTHENTICATION_REQUIRED"
    assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
