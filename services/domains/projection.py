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
    codecs = {"domain": CODECS["domain"]}

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
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
