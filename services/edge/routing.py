"""What the edge does with a request: pure, from what it knows and what was asked.

The order of the rules:
1. an ACME HTTP-01 challenge path is answered from the pending challenges,
   whatever the host (the CA asks over plain HTTP);
2. over TLS, a Host that is not the name the client asked for in SNI is a 421
   (RFC 9110 section 15.5.20): a connection set up for one site never serves another;
3. an unknown host is a plain 404;
4. a domain with `redirect_to` redirects there;
5. over HTTP, a domain whose certificate is served redirects to HTTPS, unless
   it turned that off;
6. otherwise the request goes to the stable address of the domain's service in
   its environment, or is a 503 while nothing is deployed there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yarl

from services.edge.table import Route, Upstream

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


@dataclass(frozen=True)
class Forward:
    address: str
    route: Route


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int  # 301 for GET and HEAD, 308 for the rest (keeps the method and body)


@dataclass(frozen=True)
class Answer:
    status: int
    text: str


Action = Forward | Redirect | Answer


@dataclass
class EdgeState:
    """Everything an edge replica knows, as the bucket's entries say."""

    routes: dict[str, Route] = field(default_factory=dict)  # by domain id
    names: dict[str, Route] = field(default_factory=dict)  # by full domain
    upstreams: dict[tuple[str, str], Upstream] = field(default_factory=dict)
    challenges: dict[str, str] = field(default_factory=dict)  # token -> key authorization
    # Names a certificate is served for (each name of each certificate).
    certified: dict[str, str] = field(default_factory=dict)  # name -> domain id

    def put_route(self, route: Route) -> None:
        self.drop_route(route.domain_id)
        self.routes[route.domain_id] = route
        self.names[route.full_domain] = route

    def drop_route(self, domain_id: str) -> None:
        old = self.routes.pop(domain_id, None)
        if old is not None and self.names.get(old.full_domain) is old:
            del self.names[old.full_domain]

    def put_upstream(self, service_id: str, environment_id: str, upstream: Upstream) -> None:
        current = self.upstreams.get((service_id, environment_id))
        if current is None or current.sequence <= upstream.sequence:
            self.upstreams[(service_id, environment_id)] = upstream

    def route_for(self, host: str) -> Route | None:
        return self.names.get(host) or self.names.get(wildcard_of(host) or "")

    def has_certificate(self, host: str) -> bool:
        return host in self.certified or (wildcard_of(host) or "") in self.certified


def wildcard_of(host: str) -> str | None:
    """`*.example.com` for `a.example.com`: the one wildcard that covers a name."""
    _, dot, parent = host.partition(".")
    return f"*.{parent}" if dot and "." in parent else None


def normal_host(value: str) -> str:
    """A Host header's name: lower case, without its port or a final dot."""
    host = value.strip().lower()
    if host.startswith("["):  # an IPv6 literal: never a domain of ours
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


def decide(
    state: EdgeState,
    *,
    tls: bool,
    host_header: str,
    sni: str | None,
    method: str,
    path_qs: str,
    https_port: int,
) -> Action:
    path = path_qs.split("?", 1)[0]
    if not tls and path.startswith(CHALLENGE_PREFIX):
        token = path[len(CHALLENGE_PREFIX) :]
        key_authorization = state.challenges.get(token)
        if key_authorization is None:
            return Answer(404, "no such challenge\n")
        return Answer(200, key_authorization)
    host = normal_host(host_header)
    if tls and sni is not None and normal_host(sni) != host:
        return Answer(421, "misdirected request: this connection is for another host\n")
    route = state.route_for(host)
    if route is None:
        return Answer(404, "not found: no site is served at this address\n")
    status = 301 if method in ("GET", "HEAD") else 308
    if route.redirect_to:
        return Redirect(_redirect_target(route.redirect_to, path_qs), status)
    if not tls and route.ssl_enabled and route.redirect_https and state.has_certificate(host):
        port = "" if https_port == 443 else f":{https_port}"
        return Redirect(f"https://{host}{port}{path_qs}", status)
    upstream = state.upstreams.get((route.service_id, route.environment_id))
    if upstream is None:
        return Answer(503, "no deployment is serving this site yet\n")
    return Forward(upstream.address, route)


def _redirect_target(target: str, path_qs: str) -> str:
    """A bare origin (`https://example.com`) keeps the request's path and query; a
    target with a path of its own is used as it is."""
    url = yarl.URL(target)
    if url.raw_path in ("", "/") and not url.raw_query_string:
        return str(url.origin()) + path_qs
    return target
