"""The SSRF guard: no webhook delivery reaches an internal address, however it is spelled."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from services.webhooks.ssrf import (
    AddressRefused,
    GetAddrInfo,
    GuardedResolver,
    Network,
    UnresolvableHost,
    check_url,
    guard_url,
    parse_networks,
    refusal,
    resolve,
)

REFUSED_HOSTS = [
    "127.0.0.1",
    "localhost",
    "2130706433",
    "127.1",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0.0.0.0",
    "0",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "[::1]",
    "[::]",
    "[fc00::1]",
    "[fe80::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "224.0.0.1",
    "255.255.255.255",
    # Beyond the obvious: IPv4-compatible, Teredo (client 127.0.0.1), local-use NAT64,
    # an unspecified address spelled in hex, and a name that is a loopback FQDN.
    "[::127.0.0.1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
    "[64:ff9b:1::808:808]",
    "0x0",
    "localhost.",
]

PUBLIC = "93.184.215.14"


@dataclass
class Listener:
    port: int
    hits: int = 0


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """A webhook receiver on 127.0.0.1 that counts every request reaching it."""
    found = Listener(port=0)

    async def hook(request: web.Request) -> web.Response:
        found.hits += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        found.port = runner.addresses[0][1]
        yield found
    finally:
        await runner.cleanup()


def fake_dns(answers: dict[str, list[str]]) -> GetAddrInfo:
    """A getaddrinfo that knows only ``answers``, as the real DNS would answer them."""

    async def getaddrinfo(
        host: str, port: int, *, type: int = 0
    ) -> list[tuple[int, int, int, str, tuple[object, ...]]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (address, port),
            )
            for address in answers[host]
        ]

    return getaddrinfo


async def deliver(
    url: str, allowed: Sequence[Network] = (), getaddrinfo: GetAddrInfo | None = None
) -> int | str:
    """What the delivery worker does: guard the URL, then post through the guarded session."""
    try:
        await guard_url(url, allowed, getaddrinfo=getaddrinfo)
    except AddressRefused as exc:
        return f"refused: {exc}"
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allowed, getaddrinfo=getaddrinfo), use_dns_cache=False
    )
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            async with session.post(url, json={"event": "x"}, allow_redirects=False) as response:
                return response.status
        except (AddressRefused, aiohttp.ClientError, TimeoutError) as exc:
            return f"failed: {exc!r}"


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_internal_hosts_are_refused_and_never_reached(host: str, listener: Listener) -> None:
    url = f"http://{host}:{listener.port}/hook"
    with pytest.raises(AddressRefused):
        await guard_url(url, ())

    outcome = await deliver(url)

    assert str(outcome).startswith("refused: "), outcome
    assert listener.hits == 0


@pytest.mark.parametrize("host", ["localhost", "0x7f.0.0.1", "internal.test"])
async def test_the_session_resolver_refuses_names_even_without_guard_url(
    host: str, listener: Listener
) -> None:
    resolver = GuardedResolver((), getaddrinfo=fake_dns({"internal.test": ["127.0.0.1"]}))
    if host == "localhost":  # the machine's own resolver
        resolver = GuardedResolver(())
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(AddressRefused):
            await session.post(f"http://{host}:{listener.port}/hook")

    assert listener.hits == 0


async def test_an_allowed_network_is_reached_by_address_and_by_name(listener: Listener) -> None:
    allowed = parse_networks("127.0.0.0/8, ::1/128")
    dns = fake_dns({"hooks.internal.test": ["127.0.0.1"]})

    assert await deliver(f"http://127.0.0.1:{listener.port}/hook", allowed) == 200
    # The name exists only in the fake DNS: reaching it proves aiohttp connected to
    # the address the guard checked rather than looking the name up again.
    assert await deliver(f"http://hooks.internal.test:{listener.port}/hook", allowed, dns) == 200
    assert listener.hits == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com/hook",
        "javascript:alert(1)",
        "http://user:pass@example.com/",
        "http://",
        "not a url",
        "http://example.com:0/",
        "http://example.com:65536/",
        "https://example.com/" + "a" * 2048,
    ],
)
def test_urls_that_are_not_plain_http_to_a_host_are_refused(url: str) -> None:
    with pytest.raises(AddressRefused):
        check_url(url)


@pytest.mark.parametrize(
    "url", ["http://alice:hunter2@example.com/", "http://alice:hunter2@example.com:99999/"]
)
def test_refusals_never_repeat_the_credentials(url: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        check_url(url)

    assert "alice" not in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_a_plain_https_url_passes_check_url() -> None:
    assert check_url("https://hooks.example.com:8443/in?x=1").port == 8443


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), ()) is None


def test_refusals_say_what_kind_of_address_it_is() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1"), ()) == "127.0.0.1 is a loopback address"
    assert refusal(ipaddress.ip_address("::ffff:169.254.169.254"), ()) == (
        "::ffff:a9fe:a9fe is an IPv6 form of the cloud metadata address"
    )
    # Teredo: server 65.54.227.120, client 8.8.8.8 (stored inverted: f7f7:f7f7).
    assert refusal(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:f7f7:f7f7"), ()) is None
    assert refusal(ipaddress.ip_address("64:ff9b:1::808:808"), ()) == (
        "64:ff9b:1::808:808 is a local-use NAT64 address"
    )


async def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    dns = fake_dns({"rebind.test": [PUBLIC, "127.0.0.1"]})

    with pytest.raises(AddressRefused, match=r"rebind\.test resolves to a loopback address"):
        await resolve("rebind.test", 443, (), getaddrinfo=dns)


async def test_a_name_with_only_public_addresses_resolves_to_them() -> None:
    dns = fake_dns({"hooks.example.test": [PUBLIC, PUBLIC]})

    assert await resolve("hooks.example.test", 443, (), getaddrinfo=dns) == [PUBLIC]


async def test_an_unknown_name_is_refused_as_unresolvable() -> None:
    with pytest.raises(UnresolvableHost, match=r"could not resolve nowhere\.test"):
        await resolve("nowhere.test", 443, (), getaddrinfo=fake_dns({}))


async def test_guarded_resolver_hands_aiohttp_the_checked_address() -> None:
    resolver = GuardedResolver((), getaddrinfo=fake_dns({"hooks.example.test": [PUBLIC]}))

    assert await resolver.resolve("hooks.example.test", 443, socket.AF_UNSPEC) == [
        {
            "hostname": "hooks.example.test",
            "host": PUBLIC,
            "port": 443,
            "family": socket.AF_INET,
            "proto": 0,
            "flags": socket.AI_NUMERICHOST,
        }
    ]


def test_parse_networks_reads_the_allowlist_and_names_a_bad_entry() -> None:
    assert parse_networks(" 127.0.0.0/8, ::1/128  10.0.0.0/8,") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match="not-a-cidr"):
        parse_networks("127.0.0.0/8, not-a-cidr")
