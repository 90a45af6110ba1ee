"""The domains service's NATS micro endpoints: decode, call the handler, encode."""

from __future__ import annotations

from typing import Any

from libs.messaging import Endpoint, bind
from services.domains import certificate_handlers as ch
from services.domains import commands as c
from services.domains import handlers as h
from services.domains.handlers import DomainDeps

SERVICE = "domains"


def endpoints(deps: DomainDeps) -> dict[str, Endpoint[Any]]:
    return {
        "add_domain": bind(deps, c.AddDomain, h.add_domain),
        "update_domain": bind(deps, c.UpdateDomain, h.update_domain),
        "remove_domain": bind(deps, c.RemoveDomain, h.remove_domain),
        "verify_domain": bind(deps, c.VerifyDomain, h.verify_domain),
        "request_certificate": bind(deps, c.RequestCertificate, ch.request_certificate),
        "revoke_certificate": bind(deps, c.RevokeCertificate, ch.revoke_certificate),
    }
