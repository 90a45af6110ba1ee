"""Domain names as DeployForge stores them: one spelling per name, checked at the door.

A name is stored as its IDNA A-label, lowercase, without a trailing dot
(UTS-46 mapping, so `Bücher.Example.` and `xn--bcher-kva.example` are one
name). Refused with 422: IP addresses, a public suffix itself (`co.uk`),
malformed labels, and a wildcard unless its challenge is DNS-01 (an HTTP-01
challenge cannot prove control of every subdomain).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from functools import cache

import idna
from publicsuffixlist import PublicSuffixList

from libs.errors import ValidationFailed

MAX_NAME = 253
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
CHALLENGES = ("http-01", "dns-01")


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def _a_label(name: str, field: str) -> str:
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValidationFailed(f"{name!r} is not a valid domain name", field) from None


def normalize(domain: str, subdomain: str | None, challenge: str) -> str:
    """The full name (`subdomain.domain`) as stored; 422 naming the field if refused."""
    base = domain.strip().rstrip(".")
    wildcard = base.startswith("*.")
    base = _labels(base.removeprefix("*."), "$.domain")
    if _is_ip(domain.strip().rstrip(".")):
        raise ValidationFailed("an IP address is not a domain name", "$.domain")
    name = base
    sub = (subdomain or "").strip().strip(".")
    if sub:
        if wildcard:
            raise ValidationFailed("a wildcard is allowed only as the first label", "$.domain")
        wildcard = sub == "*" or sub.startswith("*.")
        sub = sub.removeprefix("*").removeprefix(".")
        name = f"{_labels(sub, '$.subdomain')}.{base}" if sub else base
    field = "$.subdomain" if sub else "$.domain"
    if len(name) > MAX_NAME:
        raise ValidationFailed(f"a domain name is at most {MAX_NAME} characters", field)
    if "." not in name:
        raise ValidationFailed("a domain needs at least two labels", "$.domain")
    if _suffixes().is_public(name):
        raise ValidationFailed(f"{name} is a public suffix: nobody can own all of it", field)
    if wildcard:
        if challenge != "dns-01":
            raise ValidationFailed("a wildcard domain needs the dns-01 challenge", "$.challenge")
        return f"*.{name}"
    return name


def _labels(text: str, field: str) -> str:
    if not text:
        raise ValidationFailed("name the domain", field)
    if "*" in text:
        raise ValidationFailed("a wildcard is allowed only as the first label", field)
    labels = [_a_label(label, field) for label in text.split(".")]
    if not all(_LABEL.match(label) for label in labels):
        raise ValidationFailed(f"{text!r} is not a valid domain name", field)
    return ".".join(labels)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def registered_domain(full: str) -> str:
    """The name one registrant controls (`www.shop.example.co.uk` -> `example.co.uk`)."""
    bare = full.removeprefix("*.")
    return _suffixes().privatesuffix(bare) or bare


def claim_key(full: str) -> str:
    """The id of a name's claim (an aggregate id: a fixed-length token of the name)."""
    return hashlib.sha256(full.encode()).hexdigest()[:40]


def challenge_record(full: str) -> str:
    """The TXT record whose value proves control: `_deployforge-challenge.<name>`."""
    return f"_deployforge-challenge.{full.removeprefix('*.')}"
