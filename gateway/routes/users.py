"""Users: who am I, the members of my organization, and creating users (admins)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import answer_created
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, json_response, read_json
from libs.errors import NotFound, ValidationFailed
from libs.principal import Principal
from services.auth.commands import CreateUser

api = Api("users")


class Membership(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: str
    name: str
    slug: str
    role: str
    joined_at: datetime


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    is_superuser: bool
    active: bool
    default_organization_id: str | None
    created_at: datetime
    organizations: list[Membership] = []


_USER_COLUMNS = "id, email, name, is_superuser, active, default_organization_id, created_at"


_MEMBERSHIPS = msgspec.json.Decoder(list[Membership])


async def fetch_user(pool: asyncpg.Pool, user_id: str) -> User | None:
    """A user and their memberships, in one round trip."""
    row = await pool.fetchrow(
        # The f-string interpolates only the constant column list above.
        f"SELECT {_USER_COLUMNS}, (SELECT coalesce(json_agg(json_build_object("  # noqa: S608
        "  'organization_id', m.organization_id, 'name', o.name, 'slug', o.slug,"
        "  'role', m.role, 'joined_at', m.joined_at) ORDER BY m.joined_at, m.organization_id),"
        "  '[]')::text FROM auth.memberships m JOIN auth.organizations o"
        "  ON o.id = m.organization_id WHERE m.user_id = u.id) AS organizations "
        "FROM auth.users u WHERE id = $1",
        user_id,
    )
    if row is None:
        return None
    fields = dict(row)
    organizations = _MEMBERSHIPS.decode(fields.pop("organizations"))
    return User(**fields, organizations=organizations)


def _visible(principal: Principal, user: User) -> bool:
    if principal.is_superuser or principal.user_id == user.id:
        return True
    return any(m.organization_id in principal.memberships for m in user.organizations)


@api.get("/v1/users/me", summary="The calling user and their organizations", response=User)
async def me(request: web.Request) -> web.Response:
    principal = principal_of(request)
    user = await fetch_user(request.app[keys.POOL], principal.user_id)
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


@api.get("/v1/users", summary="Members of an organization (default: yours)", response=Page[User])
async def list_users(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org = request.query.get("organization_id") or principal.organization_id
    if org is None:
        raise ValidationFailed("name an organization", "organization_id")
    if not principal.is_superuser and org not in principal.memberships:
        raise NotFound("organization not found", {"field": "organization_id"})
    page = await fetch_page(
        request,
        f"SELECT {', '.join('u.' + c for c in _USER_COLUMNS.split(', '))} FROM auth.users u "  # noqa: S608
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
