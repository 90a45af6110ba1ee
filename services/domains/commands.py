"""The commands the domains service accepts over NATS (and the HTTP bodies behind them)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
DomainText = Annotated[str, Meta(min_length=1, max_length=300)]
Subdomain = Annotated[str, Meta(max_length=200)]
Port = Annotated[int, Meta(ge=1, le=65535)]
RedirectUrl = Annotated[str, Meta(min_length=1, max_length=2048)]
Challenge = Literal["http-01", "dns-01"]


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class AddDomain(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id | None = None
    domain: DomainText
    subdomain: Subdomain | None = None
    service_id: Id
    environment_id: Id
    port: Port | None = None
    ssl_enabled: bool = True
    auto_renew_ssl: bool = True
    redirect_to: RedirectUrl | None = None
    # Redirect HTTP to HTTPS once a certificate is served.
    redirect_https: bool = True
    challenge: Challenge = "http-01"


class UpdateDomain(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domain_id: Id
    service_id: Id | None = None
    environment_id: Id | None = None
    port: Port | None = None
    ssl_enabled: bool | None = None
    auto_renew_ssl: bool | None = None
    # Absent: unchanged; null: no redirect any more.
    redirect_to: RedirectUrl | msgspec.UnsetType | None = msgspec.UNSET
    redirect_https: bool | None = None


class RemoveDomain(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domain_id: Id


class VerifyDomain(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domain_id: Id


class Created(msgspec.Struct, frozen=True, kw_only=True):
    id: str


RevocationReason = Literal["unspecified", "keyCompromise", "superseded", "cessationOfOperation"]
# RFC 5280 section 5.3.1 reason codes.
REVOCATION_CODES: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "superseded": 4,
    "cessationOfOperation": 5,
}


class RequestCertificate(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domain_id: Id
    # Order a new certificate even though one is served and not due.
    force_renewal: bool = False


class RevokeCertificate(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domain_id: Id
    reason: RevocationReason = "unspecified"
