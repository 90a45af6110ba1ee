"""Domains: names routed to a service in an environment, verified by DNS before anything
is routed or issued. Also as DevFlow's service domains and dployr's proxy routes."""

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
from gateway.routes.services import get_visible_service
from gateway.routing import Api, convert, json_response, read_json
from gateway.scoping import request_org, require_visible
from services.domains import commands as c
from services.domains.names import challenge_record

api = Api("domains")


class DnsRecord(msgspec.Struct, frozen=True, kw_only=True):
    type: str  # TXT | A | AAAA | CNAME
    name: str
    value: str
    # What the record is for: "verification" (ownership) or "routing" (to the edge).
    purpose: str


class Domain(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    domain: str
    subdomain: str | None
    full_domain: str
    service_id: str
    environment_id: str
    port: int | None
    ssl_enabled: bool
    auto_renew_ssl: bool
    redirect_to: str | None
    redirect_https: bool
    challenge: str
    # pending | verified | failed; nothing is routed or issued before `verified`.
    verification_status: str
    verification_error: str | None
    # Whether the name's address records point at the edge (last looked at).
    dns_configured: bool
    addresses: list[str]
    # none | pending | issued | failed | revoked (nothing is ordered before verification).
    ssl_status: str
    # When the served certificate expires (None: none is served).
    ssl_expires_at: datetime | None
    # The records the owner must create.
    dns_records: list[DnsRecord]
    last_checked_at: datetime | None
    verified_at: datetime | None
    created_at: datetime
    updated_at: datetime


class DomainBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domain: c.DomainText
    subdomain: c.Subdomain | None = None
    service_id: c.Id
    environment_id: c.Id
    port: c.Port | None = None
    ssl_enabled: bool = True
    auto_renew_ssl: bool = True
    redirect_to: c.RedirectUrl | None = None
    redirect_https: bool = True
    challenge: c.Challenge = "http-01"


class ServiceDomainBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """DevFlow's project domain: the service is in the path."""

    domain: c.DomainText
    subdomain: c.Subdomain | None = None
    environment_id: c.Id
    port: c.Port | None = None
    ssl_enabled: bool = True
    auto_renew_ssl: bool = True
    redirect_to: c.RedirectUrl | None = None
    redirect_https: bool = True
    challenge: c.Challenge = "http-01"


class DomainPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: c.Id | None = None
    environment_id: c.Id | None = None
    port: c.Port | None = None
    ssl_enabled: bool | None = None
    auto_renew_ssl: bool | None = None
    # null removes the redirect.
    redirect_to: c.RedirectUrl | msgspec.UnsetType | None = msgspec.UNSET
    redirect_https: bool | None = None


class DomainFilters(msgspec.Struct, frozen=True, kw_only=True):
    service_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    environment_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    status: Annotated[str, msgspec.Meta(max_length=20)] | None = None


_COLUMNS = (
    "id, organization_id, domain, subdomain, full_domain, service_id, environment_id, port,"
    " ssl_enabled, auto_renew_ssl, redirect_to, redirect_https, challenge, verification_token,"
    " verification_status, verification_error, dns_configured, addresses, last_checked_at,"
    " verified_at, created_at, updated_at, ssl_status,"
    " (SELECT c.not_after FROM domains.certificates c WHERE c.domain_id = domains.id"
    " AND c.serial IS NOT NULL) AS ssl_expires_at"
)


def _records(request: web.Request, row: asyncpg.Record) -> list[DnsRecord]:
    full: str = row["full_domain"]
    records = [
        DnsRecord(
            type="TXT",
            name=challenge_record(full),
            value=row["verification_token"],
            purpose="verification",
        )
    ]
    settings = request.app[keys.SETTINGS]
    if settings.edge_public_hostname:
        records.append(
            DnsRecord(
                type="CNAME", name=full, value=settings.edge_public_hostname, purpose="routing"
            )
        )
    for address in (a.strip() for a in settings.edge_public_addresses.split(",")):
        if address:
            kind = "AAAA" if ":" in address else "A"
            records.append(DnsRecord(type=kind, name=full, value=address, purpose="routing"))
    return records


def _domain(request: web.Request, row: asyncpg.Record) -> Domain:
    fields = dict(row)
    fields.pop("verification_token")
    return Domain(**fields, dns_records=_records(request, row))


async def fetch_domain(request: web.Request, domain_id: str) -> Domain | None:
    row = await request.app[keys.POOL].fetchrow(
        f"SELECT {_COLUMNS} FROM domains.domains WHERE id = $1 AND removed_at IS NULL",  # noqa: S608
        domain_id,
    )
    return _domain(request, row) if row else None


async def _get(request: web.Request, domain_id: str) -> Domain:
    domain = await fetch_domain(request, domain_id)
    require_visible(principal_of(request), domain.organization_id if domain else None, "domain")
    assert domain is not None
    return domain


async def _add(request: web.Request, org: str, body: DomainBody) -> web.Response:
    command = c.AddDomain(organization_id=org, **msgspec.structs.asdict(body))
    return await answer_created(
        request,
        "domains",
        "add_domain",
        command,
        fetch=lambda new_id: fetch_domain(request, new_id),
        location="/v1/domains",
    )


@api.post(
    "/v1/organizations/{org_id}/domains",
    summary="Add a domain: it is routed to the service once verified",
    scope="write",
    body=DomainBody,
    response=Domain,
    status=201,
)
@api.post(
    "/v1/domains",
    summary="Add a domain (default organization)",
    scope="write",
    body=DomainBody,
    response=Domain,
    status=201,
)
async def add_domain(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    return await _add(request, org, await read_json(request, DomainBody))


@api.post(
    "/v1/services/{id}/domains",
    summary="Add a domain to a service (DevFlow's project domains)",
    scope="write",
    body=ServiceDomainBody,
    response=Domain,
    status=201,
)
async def add_service_domain(request: web.Request) -> web.Response:
    service = await get_visible_service(request, request.match_info["id"])
    body = await read_json(request, ServiceDomainBody)
    full = DomainBody(service_id=service.id, **msgspec.structs.asdict(body))
    return await _add(request, service.organization_id, full)


_LIST = (
    f"SELECT {_COLUMNS} FROM domains.domains WHERE organization_id = $1"  # noqa: S608
    " AND removed_at IS NULL AND ($2::text IS NULL OR service_id = $2)"
    " AND ($3::text IS NULL OR environment_id = $3)"
    " AND ($4::text IS NULL OR verification_status = $4)"
    " AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6))"
    " ORDER BY created_at, id LIMIT $7"
)


@api.get(
    "/v1/organizations/{org_id}/domains",
    summary="List domains",
    response=Page[Domain],
    query=DomainFilters,
)
@api.get(
    "/v1/domains",
    summary="List domains (default organization)",
    response=Page[Domain],
    query=DomainFilters,
)
async def list_domains(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    query = {k: v for k, v in request.query.items() if k in DomainFilters.__struct_fields__}
    filters = convert(query, DomainFilters)
    page = await fetch_page(
        request,
        _LIST,
        org,
        filters.service_id,
        filters.environment_id,
        filters.status,
        build=lambda r: _domain(request, r),
    )
    return json_response(page)


@api.get("/v1/domains/{id}", summary="One domain, with the DNS records to create", response=Domain)
async def get_domain(request: web.Request) -> web.Response:
    return json_response(await _get(request, request.match_info["id"]))


@api.patch(
    "/v1/domains/{id}",
    summary="Change where a domain routes, or its TLS and redirect settings",
    scope="write",
    body=DomainPatch,
    response=Domain,
)
async def update_domain(request: web.Request) -> web.Response:
    domain = await _get(request, request.match_info["id"])
    body = await read_json(request, DomainPatch)
    fields = {
        k: v
        for k, v in msgspec.structs.asdict(body).items()
        if v is not msgspec.UNSET and (v is not None or k == "redirect_to")
    }
    result = await send(
        request, "domains", "update_domain", c.UpdateDomain(domain_id=domain.id, **fields)
    )
    await caught_up(request, result)
    return json_response(await fetch_domain(request, domain.id))


@api.delete("/v1/domains/{id}", summary="Remove a domain", scope="admin", status=204)
async def remove_domain(request: web.Request) -> web.Response:
    domain = await _get(request, request.match_info["id"])
    await send(request, "domains", "remove_domain", c.RemoveDomain(domain_id=domain.id))
    return web.Response(status=204)


@api.post(
    "/v1/domains/{id}/verify",
    summary="Look the TXT token and the address records up now",
    scope="write",
    response=Domain,
)
async def verify_domain(request: web.Request) -> web.Response:
    domain = await _get(request, request.match_info["id"])
    result = await send(request, "domains", "verify_domain", c.VerifyDomain(domain_id=domain.id))
    await caught_up(request, result)
    return json_response(await fetch_domain(request, domain.id))


# --- dployr's proxy routes: a domain seen as a route -------------------------------------


class ProxyRoute(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    domain: str
    service_id: str
    environment_id: str
    port: int | None
    verification_status: str
    created_at: datetime


class ProxyRouteBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domain: c.DomainText
    service_id: c.Id
    environment_id: c.Id
    port: c.Port | None = None


def _route(domain: Domain) -> ProxyRoute:
    return ProxyRoute(
        id=domain.id,
        domain=domain.full_domain,
        service_id=domain.service_id,
        environment_id=domain.environment_id,
        port=domain.port,
        verification_status=domain.verification_status,
        created_at=domain.created_at,
    )


@api.get("/v1/proxy/routes", summary="Domains as routes (dployr)", response=Page[ProxyRoute])
async def list_routes(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    page = await fetch_page(
        request, _LIST, org, None, None, None, build=lambda r: _route(_domain(request, r))
    )
    return json_response(page)


@api.post(
    "/v1/proxy/routes",
    summary="Add a route (dployr): a domain, verified before it is routed",
    scope="write",
    body=ProxyRouteBody,
    response=Domain,
    status=201,
)
async def create_route(request: web.Request) -> web.Response:
    org = request_org(request, principal_of(request))
    body = await read_json(request, ProxyRouteBody)
    return await _add(request, org, DomainBody(**msgspec.structs.asdict(body)))


@api.delete("/v1/proxy/routes/{id}", summary="Remove a route (dployr)", scope="admin", status=204)
async def delete_route(request: web.Request) -> web.Response:
    domain = await _get(request, request.match_info["id"])
    await send(request, "domains", "remove_domain", c.RemoveDomain(domain_id=domain.id))
    return web.Response(status=204)
