"""DNS-01 through RFC 2136 dynamic updates signed with TSIG (dnspython): works with
BIND, Knot, PowerDNS and most self-hosted DNS servers.

`present` adds the TXT record `_acme-challenge.<name>` (added, not replaced: a
wildcard and its apex share one record name with two values) and waits for
`propagation` seconds, for secondaries; `withdraw` deletes exactly that value.
The zone is the configured one, or found by asking the server for the SOA of
each parent of the name in turn.
"""

from __future__ import annotations

import asyncio

import dns.asyncquery
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
from acme import messages


class DnsUpdateFailed(Exception):
    pass


class Rfc2136Responder:
    def __init__(
        self,
        server: tuple[str, int],
        *,
        key_name: str,
        key_secret: str,
        key_algorithm: str = "hmac-sha256",
        zone: str = "",
        ttl: int = 60,
        propagation: float = 2.0,
        timeout: float = 10.0,
    ) -> None:
        self.server = server
        self.keyring = dns.tsigkeyring.from_text({key_name: key_secret})
        self.key_name = dns.name.from_text(key_name)
        self.key_algorithm = dns.name.from_text(key_algorithm)
        self.zone = dns.name.from_text(zone) if zone else None
        self.ttl = ttl
        self.propagation = propagation
        self.timeout = timeout

    @staticmethod
    def record_name(identifier: str) -> dns.name.Name:
        return dns.name.from_text(f"_acme-challenge.{identifier.removeprefix('*.')}")

    async def present(self, identifier: str, challenge: messages.ChallengeBody, value: str) -> None:
        name = self.record_name(identifier)
        update = await self._update(name)
        update.add(name, self.ttl, dns.rdatatype.TXT, f'"{value}"')
        await self._send(update)
        await asyncio.sleep(self.propagation)

    async def withdraw(
        self, identifier: str, challenge: messages.ChallengeBody, value: str
    ) -> None:
        name = self.record_name(identifier)
        update = await self._update(name)
        update.delete(name, dns.rdatatype.TXT, f'"{value}"')
        await self._send(update)

    async def _update(self, name: dns.name.Name) -> dns.update.UpdateMessage:
        zone = self.zone or await self.zone_of(name)
        return dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=self.key_name, keyalgorithm=self.key_algorithm
        )

    async def _send(self, update: dns.update.UpdateMessage) -> None:
        host, port = self.server
        response = await dns.asyncquery.tcp(update, host, port=port, timeout=self.timeout)
        if response.rcode() != dns.rcode.NOERROR:
            raise DnsUpdateFailed(
                f"the DNS server refused the update: {dns.rcode.to_text(response.rcode())}"
            )

    async def zone_of(self, name: dns.name.Name) -> dns.name.Name:
        """The closest enclosing zone the server is authoritative for."""
        host, port = self.server
        candidate = name
        while candidate != dns.name.root:
            query = dns.message.make_query(candidate, dns.rdatatype.SOA)
            response = await dns.asyncquery.udp(query, host, port=port, timeout=self.timeout)
            if any(
                rrset.rdtype == dns.rdatatype.SOA and rrset.name == candidate
                for rrset in response.answer
            ):
                return candidate
            candidate = candidate.parent()
        raise DnsUpdateFailed(f"the DNS server is authoritative for no zone above {name}")
