"""A domain's TLS certificate: ordered (asynchronously), read, revoked. Never its key."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from aiohttp import web

from gateway import keys
from gateway.commands import caught_up, send
from gateway.routes.domains import _get as get_visible_domain
from gateway.routing import Api, convert, json_response, read_json
from libs.errors import NotFound
from services.domains import commands as c

api = Api("certificates")


class Certificate(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str
    full_domain: str
    # pending (being ordered, none served yet) | issued | failed | revoked
    status: str
    challenge: str
    issuer: str | None
    serial: str | None
    # The names the certificate covers (its subjectAltNames).
    names: list[str]
    not_before: datetime | None
    not_after: datetime | None
    fingerprint_sha256: str | None
    # When it is renewed (the CA's suggestion, or a third of its lifetime before expiry).
    renewal_due_at: datetime | None
    auto_renew: bool
    last_error: str | None
    # Failed attempts since the last issuance, and when the next one is made.
    attempts: int
    retry_at: datetime | None
    requested_at: datetime | None
    issued_at: datetime | None
    revoked_at: datetime | None


class CertificateBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Order a new certificate even though one is served and not due for renewal.
    force_renewal: bool = False


class GenerateBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """DevFlow's `ssl/generate`: the provider is the configured ACME CA."""

    provider: Literal["letsencrypt", "acme"] = "letsencrypt"
    force_renewal: bool = False


class RevokeQuery(msgspec.Struct, frozen=True, kw_only=True):
    reason: c.RevocationReason = "unspecified"


_SELECT = (
    "SELECT c.domain_id, c.full_domain, c.status, c.challenge, c.issuer, c.serial, c.names,"
    " c.not_before, c.not_after, c.fingerprint_sha256, c.renewal_due_at,"
    " d.auto_renew_ssl AS auto_renew, c.last_error, c.attempts, c.retry_at, c.requested_at,"
    " c.issued_at, c.revoked_at FROM domains.certificates c"
    " JOIN domains.domains d ON d.id = c.domain_id WHERE c.domain_id = $1"
)


async def _certificate(request: web.Request, domain_id: str) -> Certificate | None:
    row = await request.app[keys.POOL].fetchrow(_SELECT, domain_id)
    return Certificate(**dict(row)) if row else None


async def _order(request: web.Request, force: bool) -> web.Response:
    domain = await get_visible_domain(request, request.match_info["id"])
    result = await send(
        request,
        "domains",
        "request_certificate",
        c.RequestCertificate(domain_id=domain.id, force_renewal=force),
    )
    await caught_up(request, result)
    certificate = await _certificate(request, domain.id)
    return json_response(certificate, status=202)


@api.post(
    "/v1/domains/{id}/certificate",
    summary="Order a certificate now (asynchronous: follow its status or ssl.* webhooks)",
    scope="write",
    body=CertificateBody,
    response=Certificate,
    status=202,
)
async def order_certificate(request: web.Request) -> web.Response:
    body = await read_json(request, CertificateBody) if request.can_read_body else CertificateBody()
    return await _order(request, body.force_renewal)


@api.post(
    "/v1/domains/{id}/ssl/generate",
    summary="Order a certificate (DevFlow's ssl/generate)",
    scope="write",
    body=GenerateBody,
    response=Certificate,
    status=202,
)
async def generate_ssl(request: web.Request) -> web.Response:
    body = await read_json(request, GenerateBody) if request.can_read_body else GenerateBody()
    return await _order(request, body.force_renewal)


@api.get(
    "/v1/domains/{id}/certificate",
    summary="The domain's certificate: issuer, serial, names, validity, renewal, last error",
    response=Certificate,
)
async def get_certificate(request: web.Request) -> web.Response:
    domain = await get_visible_domain(request, request.match_info["id"])
    certificate = await _certificate(request, domain.id)
    if certificate is None:
        raise NotFound("this domain has no certificate yet")
    return json_response(certificate)


@api.delete(
    "/v1/domains/{id}/certificate",
    summary="Revoke the served certificate (the CA is told; the edge stops serving it)",
    scope="admin",
    response=Certificate,
    query=RevokeQuery,
)
async def revoke_certificate(request: web.Request) -> web.Response:
    domain = await get_visible_domain(request, request.match_info["id"])
    query = convert(
        {k: v for k, v in request.query.items() if k == "reason"},
        RevokeQuery,
    )
    result = await send(
        request,
        "domains",
        "revoke_certificate",
        c.RevokeCertificate(domain_id=domain.id, reason=query.reason),
    )
    await caught_up(request, result)
    return json_response(await _certificate(request, domain.id))
