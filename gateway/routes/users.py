"""Users: who am I, the members of my organization, and creating users (admins)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import answer_created
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, json_response, read_json
from gateway.user_directory import USER_COLUMNS, User, fetch_user
from libs.errors import NotFound, ValidationFailed
from libs.principal import Principal
from services.auth.commands import CreateUser

api = Api("users")


def _auth_position(request: web.Request) -> int:
    """The auth stream position a consistency token asks to read at (0: none)."""
    token = request.headers.get("X-Consistency-Token", "")
    context, _, seq = token.partition(":")
    return int(seq) if context == "auth" and seq.isdigit() else 0


def _visible(principal: Principal, user: User) -> bool:
    if principal.is_superuser or principal.user_id == user.id:
        return True
    return any(m.organization_id in principal.memberships for m in user.organizations)


class UserFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The query parameters of the list (documented; the route reads them itself)."""

    organization_id: str | None = None  # default: the caller's organization


@api.get("/v1/users/me", summary="The calling user and their organizations", response=User)
async def me(request: web.Request) -> web.Response:
    principal = principal_of(request)
    user = await request.app[keys.USERS].get(principal.user_id, at_least=_auth_position(request))
    if user is None:
        raise NotFound("user not found")
    return json_response(user)


@api.post(
    "/v1/users",
    summary="Create a user in an organization (admin)",
    scope="admin",
    body=CreateUser,
    response=User,
    status=201,
)
async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request, CreateUser)
    return await answer_created(
        request,
        "auth",
        "create_user",
        body,
        fetch=lambda new_id: fetch_user(request.app[keys.POOL], new_id),
        location="/v1/users",
    )


@api.get(
    "/v1/users",
    summary="Members of an organization (default: yours)",
    response=Page[User],
    query=UserFilters,
)
async def list_users(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org = request.query.get("organization_id") or principal.organization_id
    if org is None:
        raise ValidationFailed("name an organization", "organization_id")
    if not principal.is_superuser and org not in principal.memberships:
        raise NotFound("organization not found", {"field": "organization_id"})
    page = await fetch_page(
        request,
        f"SELECT {', '.join('u.' + c for c in USER_COLUMNS.split(', '))} FROM auth.users u "  # noqa: S608
        "JOIN auth.memberships m ON m.user_id = u.id AND m.organization_id = $1 "
        "WHERE ($2::timestamptz IS NULL OR (u.created_at, u.id) > ($2, $3)) "
        "ORDER BY u.created_at, u.id LIMIT $4",
        org,
        build=lambda r: User(**dict(r)),
    )
    return json_response(page)


@api.get("/v1/users/{id}", summary="One user you share an organization with", response=User)
async def get_user(request: web.Request) -> web.Response:
    principal = principal_of(request)
    user = await fetch_user(request.app[keys.POOL], request.match_info["id"])
    if user is None or not _visible(principal, user):
        raise NotFound("user not found")
    return json_response(user)
