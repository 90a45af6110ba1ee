"""Sessions: login (JSON and the OAuth2 password grant), refresh, logout, verify, JWKS."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import send
from gateway.middleware import principal_of
from gateway.routing import Api, convert, json_response, read_form, read_json
from libs.errors import ValidationFailed
from services.auth.commands import Login, Logout, Refresh, TokenPair

api = Api("auth")


class PasswordGrant(msgspec.Struct, frozen=True, kw_only=True):
    """OAuth2 password grant (RFC 6749 §4.3), as fastDeploy clients send it."""

    username: Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    grant_type: str | None = None
    scope: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class LogoutBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    refresh_token: str | None = None


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    valid: bool
    user_id: str
    organization_id: str | None
    token_type: str
    scopes: list[str]
    session_id: str | None = None
    token_id: str | None = None


_pair = msgspec.json.Decoder(TokenPair)


@api.post(
    "/v1/auth/login",
    summary="Log in with email and password",
    scope=None,
    body=Login,
    response=TokenPair,
)
async def login(request: web.Request) -> web.Response:
    body = await read_json(request, Login)
    result = await send(request, "auth", "login", body)
    return json_response(_pair.decode(result.data))


@api.post(
    "/v1/auth/token",
    summary="OAuth2 password grant (form username/password)",
    scope=None,
    body=PasswordGrant,
    form=True,
    response=TokenPair,
)
async def token(request: web.Request) -> web.Response:
    grant = await read_form(request, PasswordGrant)
    if grant.grant_type not in (None, "", "password"):
        raise ValidationFailed("only the password grant is supported", "$.grant_type")
    login = convert({"email": grant.username, "password": grant.password}, Login)
    result = await send(request, "auth", "login", login)
    return json_response(_pair.decode(result.data))


@api.post(
    "/v1/auth/refresh",
    summary="Rotate a refresh token",
    scope=None,
    body=Refresh,
    response=TokenPair,
)
async def refresh(request: web.Request) -> web.Response:
    body = await read_json(request, Refresh)
    result = await send(request, "auth", "refresh", body)
    return json_response(_pair.decode(result.data))


@api.post(
    "/v1/auth/logout",
    summary="End the session (its access and refresh tokens)",
    scope="read",
    body=LogoutBody,
    status=204,
)
async def logout(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = LogoutBody()
    if request.can_read_body:
        body = await read_json(request, LogoutBody)
    if body.refresh_token is not None:
        command = Logout(refresh_token=body.refresh_token)
    elif principal.session_id is not None:
        command = Logout(session_id=principal.session_id)
    else:
        raise ValidationFailed(
            "an API token has no session: revoke it with DELETE /v1/tokens/{id}", "Authorization"
        )
    await send(request, "auth", "logout", command)
    return web.Response(status=204)


@api.get(
    "/v1/auth/verify", summary="Check the presented credential", scope="read", response=Verification
)
async def verify(request: web.Request) -> web.Response:
    principal = principal_of(request)
    return json_response(
        Verification(
            valid=True,
            user_id=principal.user_id,
            organization_id=principal.organization_id,
            token_type="access_token" if principal.session_id else principal.kind,
            scopes=list(principal.scopes),
            session_id=principal.session_id,
            token_id=principal.token_id,
        )
    )


@api.get(
    "/v1/auth/jwks.json",
    summary="Public keys that verify access tokens",
    scope=None,
    rate_limited=False,
)
async def jwks(request: web.Request) -> web.Response:
    return json_response(
        await request.app[keys.AUTHENTICATOR].jwks(),
        headers={"Cache-Control": "public, max-age=60"},
    )


@api.get(
    "/.well-known/jwks.json",
    summary="Public keys (well-known location)",
    scope=None,
    rate_limited=False,
)
async def well_known_jwks(request: web.Request) -> web.StreamResponse:
    return await jwks(request)
