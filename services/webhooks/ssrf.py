"""The guard that keeps webhook deliveries away from internal addresses.

The threat is server-side request forgery: a tenant registers a webhook URL such
as ``http://169.254.169.254/latest/meta-data/`` or ``http://db.internal:5432/`` and
DeployForge, which sits inside the network, makes the request for them. The
disguises are many: a name that resolves to ``127.0.0.1``, legacy IPv4 spellings
(``2130706433``, ``127.1``, ``0177.0.0.1``, ``0x7f.0.0.1``), IPv6 forms that carry an
IPv4 address (``::ffff:127.0.0.1``, NAT64, 6to4, Teredo), and DNS rebinding, where a
name answers with a public address when checked and a private one when used.

The defences, all needed together:

- ``check_url`` admits only absolute ``http``/``https`` URLs with a host, a sane
  port and no credentials.
- ``refusal`` admits only globally routable addresses (judging the IPv4 address
  inside the IPv6 forms that embed one), unless the operator's allowlist
  (``DEPLOYFORGE_WEBHOOK_ALLOWED_NETWORKS``, read with ``parse_networks``) admits it.
- ``resolve`` refuses a host if any one of its addresses is refused.
- ``GuardedResolver`` is the resolver of the delivery session's ``TCPConnector``
  (with ``use_dns_cache=False``): it hands aiohttp the checked addresses as numeric
  hosts, so the connection goes to exactly what was checked, with no second lookup.
- aiohttp never asks the resolver about IP literals, so ``guard_url`` (check_url
  then resolve) runs before every request as well.

Deliveries must also be sent with ``allow_redirects=False`` (a redirect to an IP
literal would skip the resolver) and without proxies (``trust_env=False``, the
default): a proxy would resolve the name again itself.

Every refusal raises ``AddressRefused``, whose message is fit for an API 422 and a
delivery attempt's error and never contains the URL's credentials. A name that
cannot be resolved raises its subclass ``UnresolvableHost``: a worker may retry
that one later, while a caller that treats both alike just catches the parent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Sequence
from typing import Protocol, TypeAlias

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

_CLOUD_METADATA = ipaddress.IPv4Address("169.254.169.254")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Where the IPv4 address sits inside a local-use NAT64 address depends on the prefix
# length the operator chose, and the translator is by definition on our network.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
# Only these characters make up the legacy spellings socket.inet_aton accepts; the
# fullmatch also keeps out the trailing junk glibc's inet_aton ignores ("1.2.3.4 x").
_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")


class AddressRefused(Exception):
    """A webhook URL or address that must not be called; the message says why."""


class UnresolvableHost(AddressRefused):
    """The host has no address (now): refused, but worth retrying later."""


class GetAddrInfo(Protocol):
    """The shape of ``loop.getaddrinfo``, as far as ``resolve`` uses it."""

    def __call__(
        self, host: str, port: int, *, type: int = ...
    ) -> Awaitable[Sequence[tuple[int, int, int, str, tuple[object, ...]]]]: ...


def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks in a comma- or space-separated list of CIDRs ("127.0.0.0/8, ::1/128")."""
    networks: list[Network] = []
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ValueError(f"not a network in CIDR form: {entry!r} ({exc})") from None
    return tuple(networks)


def check_url(url: str) -> yarl.URL:
    """The parsed URL if it is an absolute http(s) URL fit for a webhook, else AddressRefused."""
    if len(url) > MAX_URL_LENGTH:
        raise AddressRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = yarl.URL(url)
    except ValueError:
        # yarl's message may quote the URL, credentials included.
        raise AddressRefused("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise AddressRefused("only http:// and https:// URLs are allowed")
    if not parsed.raw_host:
        raise AddressRefused("the URL has no host")
    if parsed.user is not None or parsed.password is not None:
        raise AddressRefused("the URL must not contain credentials (user:password@)")
    if not 1 <= (parsed.port or 0) <= 65535:
        raise AddressRefused("the port must be between 1 and 65535")
    return parsed


def refusal(address: Address, allowed: Sequence[Network]) -> str | None:
    """None if ``address`` may be called, else why not ("127.0.0.1 is a loopback address")."""
    verdict = _verdict(address, allowed)
    return None if verdict is None else f"{address} is {verdict}"


async def resolve(
    host: str, port: int, allowed: Sequence[Network], *, getaddrinfo: GetAddrInfo | None = None
) -> list[str]:
    """Every address of ``host`` (an IP literal or a name), if not one of them is refused."""
    literal = _literal(host)
    addresses = [literal] if literal is not None else await _look_up(host, port, getaddrinfo)
    for address in addresses:
        verdict = _verdict(address, allowed)
        if verdict is None:
            continue
        if literal is None:
            # The address a name resolves to stays private: naming it would let
            # tenants map the internal DNS through our error messages.
            raise AddressRefused(f"{host} resolves to {verdict}")
        if host == str(address):
            raise AddressRefused(f"{address} is {verdict}")
        raise AddressRefused(f"{host} is {address}, {verdict}")
    return list(dict.fromkeys(str(address) for address in addresses))


async def guard_url(
    url: str, allowed: Sequence[Network], *, getaddrinfo: GetAddrInfo | None = None
) -> yarl.URL:
    """The parsed URL if it may be called now; call it before every delivery."""
    parsed = check_url(url)
    assert parsed.raw_host is not None  # check_url saw to both
    assert parsed.port is not None
    await resolve(parsed.raw_host, parsed.port, allowed, getaddrinfo=getaddrinfo)
    return parsed


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that only ever answers with addresses ``refusal`` admits."""

    def __init__(
        self, allowed: Sequence[Network], *, getaddrinfo: GetAddrInfo | None = None
    ) -> None:
        self._allowed = tuple(allowed)
        self._getaddrinfo = getaddrinfo

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        checked = await resolve(host, port, self._allowed, getaddrinfo=self._getaddrinfo)
        results: list[ResolveResult] = []
        for address in checked:
            found = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                results.append(
                    {
                        "hostname": host,
                        "host": address,
                        "port": port,
                        "family": found,
                        "proto": 0,
                        "flags": socket.AI_NUMERICHOST,
                    }
                )
        if not results:
            raise UnresolvableHost(f"{host} has no {family.name} address")
        return results

    async def close(self) -> None:
        pass


def _verdict(address: Address, allowed: Sequence[Network]) -> str | None:
    if any(address in network for network in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address) and not (
        address.is_loopback or address.is_unspecified
    ):
        embedded = _embedded_ipv4(address)
        for inner in embedded:
            verdict = _verdict(inner, allowed)
            if verdict is not None:
                return f"an IPv6 form of {verdict}"
        if embedded:
            return None
    return _kind(address)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries, which is where a packet really goes."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo  # (server, client): both must be fit
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return (ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF),)
    return ()


def _kind(address: Address) -> str | None:
    """What makes an address unfit ("a loopback address"), or None if it is global."""
    # Most specific first; is_global alone would admit multicast and local NAT64.
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address == _CLOUD_METADATA, "the cloud metadata address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _SHARED, "a shared (carrier-grade NAT) address"),
        (address in _THIS_NETWORK, "a 'this network' address"),
        (address in _LOCAL_NAT64, "a local-use NAT64 address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a globally routable address"),
    )
    return next((kind for matched, kind in checks if matched), None)


def _literal(host: str) -> Address | None:
    """The address an IP literal denotes, legacy IPv4 spellings included, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            pass
    return None


async def _look_up(host: str, port: int, getaddrinfo: GetAddrInfo | None) -> list[Address]:
    look_up = getaddrinfo or asyncio.get_running_loop().getaddrinfo
    try:
        infos = await look_up(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnresolvableHost(f"could not resolve {host}: {exc.strerror or exc}") from None
    addresses: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses.append(ipaddress.ip_address(str(sockaddr[0])))
    if not addresses:
        raise UnresolvableHost(f"could not resolve {host}")
    return addresses
