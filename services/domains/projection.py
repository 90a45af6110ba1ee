"""The domains read model (schema `domains`). Timestamps come from event metadata, so a
replay rebuilds identical rows."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from libs.events import Event, Recorded
from libs.projections import Projection
from services.domains.events import (
    CODECS,
    STREAM,
    CertificateExpiring,
    CertificateFailed,
    CertificateIssued,
    CertificateOrderPlaced,
    CertificateRequested,
    CertificateRevoked,
    DomainAdded,
    DomainChecked,
    DomainRemoved,
    DomainUpdated,
    DomainVerificationFailed,
    DomainVerified,
)

_CHANGEABLE = (
    "service_id",
    "environment_id",
    "port",
    "ssl_enabled",
    "auto_renew_ssl",
    "redirect_to",
    "redirect_https",
)


class DomainProjection(Projection):
    name = "domains"
    schema = "domains"
    spec = STREAM
    ddl = (Path(__file__).parent / "schema.sql").read_text()
    codecs = {"domain": CODECS["domain"], "certificate": CODECS["certificate"]}

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        if recorded.meta.aggregate == "certificate":
            await _apply_certificate(conn, recorded)
            return
        event, at, domain_id = recorded.event, recorded.meta.occurred_at, recorded.meta.aggregate_id
        match event:
            case DomainAdded():
                await conn.execute(
                    "INSERT INTO domains (id, organization_id, full_domain, domain, subdomain,"
                    " service_id, environment_id, port, ssl_enabled, auto_renew_ssl, redirect_to,"
                    " redirect_https, challenge, verification_token, created_at, updated_at)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$15)"
                    " ON CONFLICT DO NOTHING",
                    event.domain_id,
                    event.organization_id,
                    event.full_domain,
                    event.domain,
                    event.subdomain,
                    event.service_id,
                    event.environment_id,
                    event.port,
                    event.ssl_enabled,
                    event.auto_renew_ssl,
                    event.redirect_to,
                    event.redirect_https,
                    event.challenge,
                    event.verification_token,
                    at,
                )
            case DomainUpdated():
                changes = {k: v for k, v in event.changes.items() if k in _CHANGEABLE}
                if changes:
                    sets = ", ".join(f"{k} = ${n}" for n, k in enumerate(changes, start=3))
                    await conn.execute(
                        f"UPDATE domains SET {sets}, updated_at = $2 WHERE id = $1",  # noqa: S608
                        domain_id,
                        at,
                        *changes.values(),
                    )
            case DomainVerified():
                await conn.execute(
                    "UPDATE domains SET verification_status = 'verified',"
                    " verification_error = NULL, dns_configured = $2, addresses = $3,"
                    " last_checked_at = $4, verified_at = $4, updated_at = $4 WHERE id = $1",
                    domain_id,
                    event.dns_configured,
                    event.addresses,
                    at,
                )
            case DomainChecked():
                await conn.execute(
                    "UPDATE domains SET dns_configured = $2, addresses = $3, last_checked_at = $4,"
                    " updated_at = $4 WHERE id = $1",
                    domain_id,
                    event.dns_configured,
                    event.addresses,
                    at,
                )
            case DomainVerificationFailed():
                # A verified domain stays verified (decider.evolve_domain): only the check's
                # findings are recorded.
                await conn.execute(
                    "UPDATE domains SET verification_status = CASE WHEN verification_status ="
                    " 'verified' THEN 'verified' ELSE 'failed' END, verification_error = $2,"
                    " dns_configured = $3, addresses = $4, last_checked_at = $5, updated_at = $5"
                    " WHERE id = $1",
                    domain_id,
                    event.reason,
                    event.dns_configured,
                    event.addresses,
                    at,
                )
            case DomainRemoved():
                await conn.execute(
                    "UPDATE domains SET removed_at = $2, updated_at = $2 WHERE id = $1",
                    domain_id,
                    at,
                )


async def _apply_certificate(conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
    event, at, domain_id = recorded.event, recorded.meta.occurred_at, recorded.meta.aggregate_id
    match event:
        case CertificateRequested():
            await conn.execute(
                "INSERT INTO certificates (domain_id, organization_id, full_domain, status,"
                " challenge, names, requested_at, updated_at)"
                " VALUES ($1,$2,$3,'pending',$4,$5,$6,$6)"
                " ON CONFLICT (domain_id) DO UPDATE SET status = CASE WHEN certificates.serial IS"
                " NULL THEN 'pending' ELSE certificates.status END, challenge = $4,"
                " requested_at = $6, order_url = NULL, updated_at = $6",
                domain_id,
                event.organization_id,
                event.full_domain,
                event.challenge,
                event.names,
                at,
            )
            await _ssl_status(conn, domain_id, at)
        case CertificateOrderPlaced():
            await conn.execute(
                "UPDATE certificates SET order_url = $2, updated_at = $3 WHERE domain_id = $1",
                domain_id,
                event.order_url,
                at,
            )
        case CertificateIssued():  # and CertificateRenewed
            await conn.execute(
                "UPDATE certificates SET status = 'issued', issuer = $2, serial = $3, names = $4,"
                " not_before = $5, not_after = $6, fingerprint_sha256 = $7, renewal_due_at = $8,"
                " order_url = NULL, last_error = NULL, attempts = 0, retry_at = NULL,"
                " expiring_announced = NULL, issued_at = $9, revoked_at = NULL, updated_at = $9"
                " WHERE domain_id = $1",
                domain_id,
                event.issuer,
                event.serial,
                event.names,
                event.not_before,
                event.not_after,
                event.fingerprint_sha256,
                event.renewal_due_at,
                at,
            )
            await _ssl_status(conn, domain_id, at)
        case CertificateFailed():
            await conn.execute(
                "UPDATE certificates SET status = CASE WHEN serial IS NULL THEN 'failed'"
                " ELSE 'issued' END, last_error = $2, attempts = $3, retry_at = $4,"
                " order_url = NULL, updated_at = $5 WHERE domain_id = $1",
                domain_id,
                event.error,
                event.attempts,
                event.retry_at,
                at,
            )
            await _ssl_status(conn, domain_id, at)
        case CertificateExpiring():
            await conn.execute(
                "UPDATE certificates SET expiring_announced = $2, updated_at = $3"
                " WHERE domain_id = $1",
                domain_id,
                event.days,
                at,
            )
        case CertificateRevoked():
            await conn.execute(
                "UPDATE certificates SET status = 'revoked', serial = NULL, not_before = NULL,"
                " not_after = NULL, renewal_due_at = NULL, revoked_at = $2, updated_at = $2"
                " WHERE domain_id = $1",
                domain_id,
                at,
            )
            await _ssl_status(conn, domain_id, at)


async def _ssl_status(conn: asyncpg.Connection, domain_id: str, at: object) -> None:
    await conn.execute(
        "UPDATE domains SET ssl_status = c.status, updated_at = $2 FROM certificates c"
        " WHERE domains.id = $1 AND c.domain_id = $1",
        domain_id,
        at,
    )
