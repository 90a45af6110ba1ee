"""The audit trail: who changed what, when, and in which request (owners and admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from gateway import keys
from gateway.middleware import principal_of
from gateway.pagination import Page, decode_cursor, page_of
from gateway.routing import Api, convert, json_response
from gateway.scoping import request_org
from libs.errors import AuthorizationDenied
from services.audit.main import AUDITED

api = Api("audit")

# One read model per stream (services/audit): read as one.
_SCHEMAS = tuple(f"audit_{spec.context}" for spec, _ in AUDITED)
_ENTRIES = " UNION ALL ".join(
    f"SELECT * FROM {schema}.entries WHERE organization_id = $1"  # noqa: S608 (constants)
    for schema in _SCHEMAS
)
_SQL = (  # the schema names are constants; every value is a parameter
    "SELECT e.event_id AS id, e.occurred_at, e.actor, e.credential, e.event_type,"  # noqa: S608
    " e.resource_type, e.resource_id, e.fields, e.correlation_id, e.causation_id,"
    " u.name AS user_name, u.email AS user_email, t.name AS token_name"
    f" FROM ({_ENTRIES}) e"
    " LEFT JOIN auth.users u ON u.id = e.actor LEFT JOIN auth.tokens t ON t.id = e.credential"
    " WHERE ($2::text IS NULL OR e.actor = $2)"
    " AND ($3::text IS NULL OR e.resource_type = $3)"
    " AND ($4::text IS NULL OR e.resource_id = $4)"
    " AND ($5::text IS NULL OR e.event_type = $5"
    "      OR (right($5, 2) = '.*' AND starts_with(e.event_type, left($5, -1))))"
    " AND ($6::timestamptz IS NULL OR e.occurred_at >= $6)"
    " AND ($7::timestamptz IS NULL OR e.occurred_at < $7)"
    " AND ($8::timestamptz IS NULL OR (e.occurred_at, e.event_id) < ($8, $9))"
    " AND ($11::text IS NULL OR e.correlation_id = $11)"
    " ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT $10"
)

Filter = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    actor: Filter | None = None
    resource_type: Filter | None = None
    resource_id: Filter | None = None
    # An event type, or a prefix ending in `.*` (`project.*`).
    event_type: Filter | None = None
    since: datetime | None = None
    until: datetime | None = None
    # One request's changes, and what they caused in turn.
    correlation_id: Filter | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    cursor: str | None = None


class AuditActor(msgspec.Struct, frozen=True, kw_only=True):
    # "token" when an API token was used (its id and name), else "user".
    type: Literal["user", "token"]
    id: str
    name: str | None
    user_id: str
    user_name: str | None
    user_email: str | None


class AuditResource(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    id: str


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    occurred_at: datetime
    actor: AuditActor
    event_type: str
    resource: AuditResource
    # The names of the fields the change set, never their values.
    fields: list[str]
    # The request that caused it (also the correlation id of what it caused in turn).
    request_id: str | None
    correlation_id: str | None
    causation_id: str | None


def _entry(row: asyncpg.Record) -> AuditEntry:
    token = row["credential"]
    return AuditEntry(
        id=row["id"],
        occurred_at=row["occurred_at"],
        actor=AuditActor(
            type="token" if token else "user",
            id=token or row["actor"],
            name=row["token_name"] if token else row["user_name"],
            user_id=row["actor"],
            user_name=row["user_name"],
            user_email=row["user_email"],
        ),
        event_type=row["event_type"],
        resource=AuditResource(type=row["resource_type"], id=row["resource_id"]),
        fields=list(row["fields"]),
        request_id=row["correlation_id"] if row["causation_id"] is None else None,
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
    )


@api.get(
    "/v1/organizations/{org_id}/audit",
    summary="The organization's audit trail, newest first (owners and admins)",
    scope="admin",
    response=Page[AuditEntry],
    query=AuditQuery,
)
@api.get(
    "/v1/audit",
    summary="The default organization's audit trail, newest first (owners and admins)",
    scope="admin",
    response=Page[AuditEntry],
    query=AuditQuery,
)
async def list_audit(request: web.Request) -> web.Response:
    principal = principal_of(request)
    org = request_org(request, principal)
    if not principal.is_superuser and principal.role_in(org) not in ("owner", "admin"):
        raise AuthorizationDenied(
            "the audit trail is for the organization's owners and admins",
            {"required_role": "admin"},
        )
    query = convert(dict(request.query), AuditQuery)
    after = decode_cursor(query.cursor)
    args: list[Any] = [
        org,
        query.actor,
        query.resource_type,
        query.resource_id,
        query.event_type,
        query.since,
        query.until,
        after[0] if after else None,
        after[1] if after else "",
        query.limit + 1,
        query.correlation_id,
    ]
    rows = await request.app[keys.POOL].fetch(_SQL, *args)
    page: Page[AuditEntry] = page_of(
        [_entry(r) for r in rows], list(rows), query.limit, "occurred_at"
    )
    return json_response(page)
