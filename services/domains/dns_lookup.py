"""What DNS says about a domain: its challenge TXT record and where its name points.

Asked of the configured resolver (`domains_dns_resolver`, `host` or
`host:port`, several comma separated) or the system's, with dnspython's
asynchronous resolver. Caches are not shared: every verification asks again.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from services.domains.decider import Lookup
from services.domains.names import challenge_record


class EdgeAddresses:
    """Where a domain must point for traffic to reach the edge: its addresses, or a
    name (a CNAME to it, or the same addresses as it)."""

    def __init__(self, addresses: list[str], hostname: str | None = None) -> None:
        self.addresses = {str(ipaddress.ip_address(a)) for a in addresses}
        self.hostname = hostname.rstrip(".").lower() if hostname else None


def parse_resolvers(text: str) -> list[tuple[str, int]]:
    """`"127.0.0.1:8053, ::1"` -> [("127.0.0.1", 8053), ("::1", 53)]."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, port = item, 53
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            port = int(rest.lstrip(":") or 53)
        elif item.count(":") == 1:
            host, _, raw = item.partition(":")
            port = int(raw)
        found.append((str(ipaddress.ip_address(host)), port))
    return found


class DnsLookup:
    def __init__(
        self, resolvers: list[tuple[str, int]], edge: EdgeAddresses, timeout: float = 5.0
    ) -> None:
        self.edge = edge
        self.timeout = timeout
        self._resolvers = resolvers

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if not self._resolvers:
            resolver = dns.asyncresolver.Resolver()
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in self._resolvers
            ]
        resolver.lifetime = self.timeout
        resolver.cache = None
        return resolver

    async def look(self, full_domain: str) -> Lookup:
        resolver = self._resolver()
        name = full_domain.removeprefix("*.")
        # A wildcard's addresses are any subdomain's: ask for one nobody would name.
        probe = f"_deployforge-probe.{name}" if full_domain.startswith("*.") else name
        try:
            txt, addresses, cname = await asyncio.gather(
                self._txt(resolver, challenge_record(full_domain)),
                self._addresses(resolver, probe),
                self._cname(resolver, probe),
            )
        except dns.exception.DNSException as exc:
            return Lookup(error=type(exc).__name__)
        points = bool(addresses) and set(addresses) <= self.edge.addresses
        if self.edge.hostname is not None and cname == self.edge.hostname:
            points = True
        return Lookup(txt=txt, addresses=sorted(addresses), points_at_edge=points)

    async def _txt(self, resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
        answer = await _answer(resolver, name, "TXT")
        return [b"".join(r.strings).decode(errors="replace") for r in answer]

    async def _addresses(self, resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
        found: list[str] = []
        for kind in ("A", "AAAA"):
            found += [
                str(ipaddress.ip_address(r.address)) for r in await _answer(resolver, name, kind)
            ]
        return found

    async def _cname(self, resolver: dns.asyncresolver.Resolver, name: str) -> str | None:
        answer = await _answer(resolver, name, "CNAME")
        return str(answer[0].target).rstrip(".").lower() if answer else None

    async def caa_refusal(self, full_domain: str, identities: set[str]) -> str | None:
        """Look CAA up the tree from the name (the closest set rules) and judge it."""
        resolver = self._resolver()
        labels = full_domain.removeprefix("*.").split(".")
        for start in range(len(labels) - 1):
            name = ".".join(labels[start:])
            try:
                answer = await _answer(resolver, name, "CAA")
            except dns.exception.DNSException as exc:
                return f"CAA lookup failed ({type(exc).__name__})"
            if answer:
                records = [(r.flags, r.tag.decode(), r.value.decode()) for r in answer]
                return caa_refusal(records, identities, wildcard=full_domain.startswith("*."))
        return None


async def _answer(resolver: dns.asyncresolver.Resolver, name: str, kind: str) -> list[Any]:
    """The records of one kind (none for NXDOMAIN or no answer); other errors raise."""
    try:
        return list(await resolver.resolve(dns.name.from_text(name), kind, search=False))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def caa_refusal(
    records: list[tuple[int, str, str]], identities: set[str], *, wildcard: bool
) -> str | None:
    """Why the CAA records `(flags, tag, value)` forbid the CA named by `identities`, or
    None when they allow it (RFC 8659: `issuewild` rules wildcards when present; an
    unknown tag with the critical flag forbids everyone)."""
    tags = {tag.lower() for _, tag, _ in records}
    for flags, tag, _ in records:
        if flags & 128 and tag.lower() not in ("issue", "issuewild", "iodef"):
            return f"a critical CAA property {tag!r} is not understood"
    kind = "issuewild" if wildcard and "issuewild" in tags else "issue"
    relevant = [value for _, tag, value in records if tag.lower() == kind]
    if not relevant:
        return None
    allowed = {value.split(";", 1)[0].strip().lower() for value in relevant}
    if allowed & identities:
        return None
    named = ", ".join(sorted(a or '";"' for a in allowed))
    return f"CAA records allow only {named} to issue for this name"
