"""Bad input gets a 4xx in the envelope naming the field; never a 500 or a trace."""

from __future__ import annotations

import asyncio
import io
import json
from contextlib import redirect_stdout
from typing import Any

import jwt
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack


async def _error(resp: Any, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, text
    assert "Traceback" not in text
    body: dict[str, Any] = json.loads(text)["error"]
    assert set(body) == {"code", "message", "details", "request_id"}
    assert body["request_id"] == resp.headers["X-Request-Id"]
    return body


async def test_malformed_json_is_400_naming_the_body(stack: Stack) -> None:
    resp = await stack.client.post(
        "/v1/auth/login", data=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    body = await _error(resp, 400)
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "$"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": 42, "password": "x"}, "$.email"),
        ({"password": "x"}, "$.email"),
        ({"email": "a@example.com", "password": "x", "admin": True}, "$.admin"),
        ({"email": "not-an-email", "password": "x"}, "$.email"),
        ([], "$"),
    ],
    ids=["wrong-type", "missing", "unknown", "pattern", "not-an-object"],
)
async def test_invalid_fields_are_422_naming_the_field(
    stack: Stack, payload: Any, field: str
) -> None:
    resp = await stack.client.post("/v1/auth/login", json=payload)
    body = await _error(resp, 422)
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field


async def test_list_items_are_named_by_path(stack: Stack) -> None:
    resp = await stack.client.post(
        "/v1/tokens", json={"name": "t", "scopes": ["read", "root"]}, headers=stack.auth()
    )
    body = await _error(resp, 422)
    assert body["details"]["field"] == "$.scopes[1]"


async def test_wrong_content_type_is_415(stack: Stack) -> None:
    resp = await stack.client.post(
        "/v1/auth/login", data="email=a&password=b", headers={"Content-Type": "text/plain"}
    )
    body = await _error(resp, 415)
    assert body["details"]["field"] == "Content-Type"


async def test_oversized_body_is_413(stack: Stack) -> None:
    small = await stack.add_gateway(max_body_bytes=1024)
    resp = await small.post(
        "/v1/auth/login", data=b"x" * 4096, headers={"Content-Type": "application/json"}
    )
    body = await _error(resp, 413)
    assert body["details"]["field"] == "body"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer dfp_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"},
        {"X-API-Key": "dfp_notreal_x"},
        {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
        {"Authorization": "Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImtleV94In0.e30.c2ln"},
    ],
    ids=["garbage", "basic", "unknown-api-token", "short-api-key", "alg-none", "unknown-kid"],
)
async def test_bad_credentials_are_401(stack: Stack, headers: dict[str, str]) -> None:
    resp = await stack.client.get("/v1/users/me", headers=headers)
    body = await _error(resp, 401)
    assert body["code"] == "AUTHENTICATION_REQUIRED"


async def test_tampered_access_token_is_401(stack: Stack) -> None:
    head, claims, signature = stack.admin_token.split(".")
    forged = f"{head}.{claims[:-2]}AA.{signature}"
    await _error(await stack.client.get("/v1/users/me", headers=stack.auth(forged)), 401)


async def test_expired_access_token_is_401(stack: Stack) -> None:
    # A second auth replica signs one-second tokens; both answer logins in turn.
    await stack.start_auth(access_token_ttl_seconds=1, run_projection=False)
    for _ in range(40):
        tokens = await stack.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        if claims["exp"] - claims["iat"] == 1:
            break
    else:
        raise AssertionError("the short-lived replica never answered")
    await asyncio.sleep(2.1)
    resp = await stack.client.get("/v1/users/me", headers=stack.auth(tokens["access_token"]))
    body = await _error(resp, 401)
    assert "expired" in body["message"]


async def test_unknown_route_and_wrong_method_are_enveloped(stack: Stack) -> None:
    body = await _error(await stack.client.get("/v1/nowhere"), 404)
    assert body["code"] == "RESOURCE_NOT_FOUND"
    body = await _error(await stack.client.delete("/v1/auth/login"), 405)
    assert body["code"] == "METHOD_NOT_ALLOWED"


async def test_no_secret_reaches_a_response_or_a_log_line(stack: Stack) -> None:
    captured = io.StringIO()
    with redirect_stdout(captured):
        tokens = await stack.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        resp = await stack.client.post(
            "/v1/tokens", json={"name": "n", "scopes": ["read"]}, headers=stack.auth()
        )
        issued = await resp.json()
        await stack.client.post(
            "/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong-one!"}
        )
        await stack.client.post("/v1/auth/refresh", json={"refresh_token": "dfr_x_y"})
        users = await (await stack.client.get("/v1/users", headers=stack.auth())).text()
    logs = captured.getvalue()
    for secret in (
        ADMIN_PASSWORD,
        "wrong-one!",
        tokens["refresh_token"],
        issued["token"],
        tokens["access_token"],
    ):
        assert secret not in logs
    assert "password" not in users
    assert "secret_hash" not in users


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": "a\\u0000b"}', "$.name"),
        (b'{"name": "ok", "description": "\\ud800"}', "$.description"),
        (b'{"name": "x\\udfff"}', "$.name"),
    ],
    ids=["nul", "lone-high-surrogate", "lone-low-surrogate"],
)
async def test_text_no_store_can_hold_is_422_naming_the_field(
    stack: Stack, body: bytes, field: str
) -> None:
    resp = await stack.client.post(
        "/v1/projects", data=body, headers={**stack.auth(), "Content-Type": "application/json"}
    )
    error = await _error(resp, 422)
    assert error["details"]["field"] == field
    listed = await (await stack.client.get("/v1/projects", headers=stack.auth())).json()
    assert listed["items"] == []  # nothing was appended


async def test_unstorable_path_query_and_header_values_are_422(stack: Stack) -> None:
    resp = await stack.client.get("/v1/projects/prj%00x", headers=stack.auth())
    error = await _error(resp, 422)
    assert error["details"] == {
        "field": "id",
        "in": "path",
    }
    resp = await stack.client.get("/v1/services?project_id=a%00b", headers=stack.auth())
    error = await _error(resp, 422)
    assert (error["details"]["field"], error["details"]["in"]) == ("project_id", "query")
    resp = await stack.client.get("/v1/services?a%00b=1", headers=stack.auth())
    error = await _error(resp, 422)
    assert error["details"]["field"] == "a\ufffdb"  # named, not quoted back
    assert "\x00" not in error["message"]

    # A header byte that is not UTF-8 reaches the app as a lone surrogate.
    host, port = stack.client.server.host, stack.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    body = b'{"name": "p"}'
    writer.write(
        b"POST /v1/projects HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {stack.admin_token}\r\n".encode()
        + b"Content-Type: application/json\r\nIdempotency-Key: k\xff\xfe\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 422"), raw[:300]
    details = json.loads(payload)["error"]["details"]
    assert details == {"field": "Idempotency-Key", "in": "header"}


async def test_deeply_nested_values_are_refused_not_crashed_on(stack: Stack) -> None:
    deep = b'{"a":' * 40 + b"1" + b"}" * 40
    resp = await stack.client.post(
        "/v1/environments",
        data=b'{"name": "deep", "configuration": ' + deep + b"}",
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    error = await _error(resp, 422)
    assert error["details"]["field"].startswith("$.configuration.a.a")
    deeper = b'{"a":' * 5000 + b"1" + b"}" * 5000
    resp = await stack.client.post(
        "/v1/environments",
        data=b'{"name": "deeper", "configuration": ' + deeper + b"}",
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    await _error(resp, 422)


async def test_a_form_without_its_multipart_boundary_is_400(stack: Stack) -> None:
    resp = await stack.client.post(
        "/v1/auth/token",
        data=b"username=a&password=b",
        headers={"Content-Type": "multipart/form-data"},
    )
    error = await _error(resp, 400)
    assert error["details"]["field"] == "body"
