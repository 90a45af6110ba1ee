"""Organizations and their members."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import answer_created, caught_up, send
from gateway.middleware import principal_of
from gateway.pagination import Page, fetch_page
from gateway.routing import Api, json_response, read_json
from libs.errors import NotFound
from libs.messaging import CommandResult
from libs.principal import Principal
from services.auth.commands import (
    AddMember,
    ChangeMemberRole,
    CreateOrganization,
    RemoveMember,
    RoleName,
)

api = Api("organizations")

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class Organization(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    slug: str
    created_at: datetime
    role: str | None = None


class Member(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    email: str
    name: str
    role: str
    joined_at: datetime


class NewMember(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: UserId
    role: RoleName


class RoleChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: RoleName


def _require_member(principal: Principal, org_id: str) -> None:
    if not principal.is_superuser and org_id not in principal.memberships:
        raise NotFound("organization not found")


async def fetch_organization(pool: asyncpg.Pool, org_id: str, user_id: str) -> Organization | None:
    row = await pool.fetchrow(
        "SELECT o.id, o.name, o.slug, o.created_at, m.role FROM auth.organizations o "
        "LEFT JOIN auth.memberships m ON m.organization_id = o.id AND m.user_id = $2 "
        "WHERE o.id = $1",
        org_id,
        user_id,
    )
    return Organization(**dict(row)) if row else None


async def fetch_member(pool: asyncpg.Pool, org_id: str, user_id: str) -> Member | None:
    row = await pool.fetchrow(
        "SELECT m.user_id, u.email, u.name, m.role, m.joined_at FROM auth.memberships m "
        "JOIN auth.users u ON u.id = m.user_id WHERE m.organization_id = $1 AND m.user_id = $2",
        org_id,
        user_id,
    )
    return Member(**dict(row)) if row else None


@api.post(
    "/v1/organizations",
    summary="Create an organization; you become its owner",
    scope="write",
    body=CreateOrganization,
    response=Organization,
    status=201,
)
async def create_organization(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_json(request, CreateOrganization)
    return await answer_created(
        request,
        "auth",
        "create_organization",
        body,
        fetch=lambda new_id: fetch_organization(request.app[keys.POOL], new_id, principal.user_id),
        location="/v1/organizations",
    )


@api.get("/v1/organizations", summary="Organizations you belong to", response=Page[Organization])
async def list_organizations(request: web.Request) -> web.Response:
    principal = principal_of(request)
    page = await fetch_page(
        request,
        "SELECT o.id, o.name, o.slug, o.created_at, m.role FROM auth.organizations o "
        "LEFT JOIN auth.memberships m ON m.organization_id = o.id AND m.user_id = $1 "
        "WHERE (m.user_id IS NOT NULL OR $2) AND o.id = ANY($3::text[]) IS NOT FALSE "
        "AND ($4::timestamptz IS NULL OR (o.created_at, o.id) > ($4, $5)) "
        "ORDER BY o.created_at, o.id LIMIT $6",
        principal.user_id,
        principal.is_superuser,
        # A token sees only its own organization (NULL: no restriction).
        None if principal.kind == "user" else list(principal.memberships),
        build=lambda r: Organization(**dict(r)),
    )
    return json_response(page)


@api.get("/v1/organizations/{id}", summary="One organization", response=Organization)
async def get_organization(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org_id = request.match_info["id"]
    _require_member(principal, org_id)
    org = await fetch_organization(request.app[keys.POOL], org_id, principal.user_id)
    if org is None:
        raise NotFound("organization not found")
    return json_response(org)


@api.get(
    "/v1/organizations/{id}/members", summary="Members of an organization", response=Page[Member]
)
async def list_members(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org_id = request.match_info["id"]
    _require_member(principal, org_id)
    page = await fetch_page(
        request,
        # `id` is the cursor's tie-breaker column.
        "SELECT m.user_id AS id, m.user_id, u.email, u.name, m.role, m.joined_at "
        "FROM auth.memberships m JOIN auth.users u ON u.id = m.user_id "
        "WHERE m.organization_id = $1 "
        "AND ($2::timestamptz IS NULL OR (m.joined_at, m.user_id) > ($2, $3)) "
        "ORDER BY m.joined_at, m.user_id LIMIT $4",
        org_id,
        build=lambda r: Member(
            user_id=r["user_id"],
            email=r["email"],
            name=r["name"],
            role=r["role"],
            joined_at=r["joined_at"],
        ),
        at="joined_at",
    )
    return json_response(page)


@api.post(
    "/v1/organizations/{id}/members",
    summary="Add a user to an organization",
    scope="admin",
    body=NewMember,
    response=Member,
    status=201,
)
async def add_member(request: web.Request) -> web.Response:
    org_id = request.match_info["id"]
    body = await read_json(request, NewMember)
    command = AddMember(organization_id=org_id, user_id=body.user_id, role=body.role)
    result = await send(request, "auth", "add_member", command)
    _changed(request, body.user_id, result)
    await caught_up(request, result)
    member = await fetch_member(request.app[keys.POOL], org_id, body.user_id)
    return json_response(member or {"user_id": body.user_id, "role": body.role}, status=201)


@api.patch(
    "/v1/organizations/{id}/members/{user_id}",
    summary="Change a member's role",
    scope="admin",
    body=RoleChange,
    response=Member,
)
async def change_role(request: web.Request) -> web.Response:
    org_id, user_id = request.match_info["id"], request.match_info["user_id"]
    body = await read_json(request, RoleChange)
    command = ChangeMemberRole(organization_id=org_id, user_id=user_id, role=body.role)
    result = await send(request, "auth", "change_member_role", command)
    _changed(request, user_id, result)
    await caught_up(request, result)
    member = await fetch_member(request.app[keys.POOL], org_id, user_id)
    return json_response(member or {"user_id": user_id, "role": body.role})


@api.delete(
    "/v1/organizations/{id}/members/{user_id}", summary="Remove a member", scope="admin", status=204
)
async def remove_member(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    command = RemoveMember(organization_id=request.match_info["id"], user_id=user_id)
    result = await send(request, "auth", "remove_member", command)
    _changed(request, user_id, result)
    await caught_up(request, result)
    return web.Response(status=204)


def _changed(request: web.Request, user_id: str, result: CommandResult) -> None:
    """A member's access changed: this gateway forgets what it cached of them at once
    (the others when the event reaches them, in milliseconds), so that a member removed
    reaches nothing of the organization from the moment the answer is sent."""
    context, _, seq = (result.position or "").partition(":")
    if context == "auth" and seq.isdigit():
        request.app[keys.USERS].changed(user_id, int(seq))
