"""Named API tokens: issued once in clear, listed without secrets, revoked."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web

from gateway.commands import caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, json_response, read_json
from services.auth.commands import Id, IssuedToken, IssueToken, Name, RevokeToken, ScopeName

api = Api("tokens")


class NewToken(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    scopes: Annotated[list[ScopeName], msgspec.Meta(min_length=1, max_length=4)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None
    organization_id: Id | None = None


class Token(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    kind: str
    prefix: str
    scopes: list[str]
    organization_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    service_id: str | None = None
    deployment_id: str | None = None


@api.post(
    "/v1/tokens",
    summary="Create a named API token (shown once)",
    scope="write",
    body=NewToken,
    response=IssuedToken,
    status=201,
)
async def create_token(request: web.Request) -> web.Response:
    body = await read_json(request, NewToken)
    command = IssueToken(
        name=body.name,
        scopes=body.scopes,
        kind="personal",
        expires_in_days=body.expires_in_days,
        organization_id=body.organization_id,
    )
    result = await send(request, "auth", "issue_token", command)
    # The token must work the moment its owner receives it.
    await caught_up(request, result)
    issued = msgspec.json.decode(result.data, type=IssuedToken)
    return json_response(issued, status=201, headers={"Location": f"/v1/tokens/{issued.id}"})


@api.get("/v1/tokens", summary="Your API tokens (no secrets)", response=Page[Token])
async def list_tokens(request: web.Request) -> web.Response:
    principal = principal_of(request)
    page = await fetch_page(
        request,
        "SELECT id, name, kind, prefix, scopes, organization_id, created_at, expires_at, "
        "revoked_at, service_id, deployment_id FROM auth.tokens WHERE user_id = $1 "
        "AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3)) "
        "ORDER BY created_at, id LIMIT $4",
        principal.user_id,
        build=lambda r: Token(**dict(r)),
    )
    return json_response(page)


@api.delete("/v1/tokens/{id}", summary="Revoke an API token", scope="write", status=204)
async def revoke_token(request: web.Request) -> web.Response:
    await send(request, "auth", "revoke_token", RevokeToken(token_id=request.match_info["id"]))
    return web.Response(status=204)
