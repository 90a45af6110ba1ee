"""What webhook receivers are told of a domain's certificate (`ssl.*`). Never a key, never
the certificate itself: its serial, names, validity and fingerprint say which it is."""

from __future__ import annotations

from typing import Any

from libs.events import Event, Recorded
from services.domains import events as domains


def certificate_payload(recorded: Recorded[Event]) -> tuple[str, dict[str, Any]] | None:
    event, domain_id = recorded.event, recorded.meta.aggregate_id
    match event:
        case domains.CertificateRequested():
            return "ssl.requested", {
                "domain_id": domain_id,
                "full_domain": event.full_domain,
                "names": event.names,
                "challenge": event.challenge,
                "reason": event.reason,
            }
        case domains.CertificateIssued():  # and CertificateRenewed
            kind = "ssl.renewed" if isinstance(event, domains.CertificateRenewed) else "ssl.issued"
            data = {
                "domain_id": domain_id,
                "full_domain": event.full_domain,
                "serial": event.serial,
                "issuer": event.issuer,
                "names": event.names,
                "not_before": event.not_before.isoformat(),
                "not_after": event.not_after.isoformat(),
                "fingerprint_sha256": event.fingerprint_sha256,
                "renewal_due_at": event.renewal_due_at.isoformat(),
            }
            if isinstance(event, domains.CertificateRenewed):
                data["previous_serial"] = event.previous_serial
            return kind, data
        case domains.CertificateFailed():
            return "ssl.failed", {
                "domain_id": domain_id,
                "full_domain": event.full_domain,
                "error": event.error,
                "attempts": event.attempts,
                "retry_at": event.retry_at.isoformat() if event.retry_at else None,
            }
        case domains.CertificateExpiring():
            return "ssl.expiring", {
                "domain_id": domain_id,
                "full_domain": event.full_domain,
                "serial": event.serial,
                "not_after": event.not_after.isoformat(),
                "days": event.days,
            }
        case domains.CertificateRevoked():
            return "ssl.revoked", {
                "domain_id": domain_id,
                "full_domain": event.full_domain,
                "serial": event.serial,
                "reason": event.reason,
            }
    return None
