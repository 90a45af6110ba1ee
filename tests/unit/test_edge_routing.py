"""What the edge does with a request, given what it knows: the rules in their order."""

from __future__ import annotations

from services.edge.routing import (
    Answer,
    EdgeState,
    Forward,
    Redirect,
    decide,
    normal_host,
    wildcard_of,
)
from services.edge.table import Route, Upstream


def state(*routes: Route, certified: tuple[str, ...] = (), upstream: bool = True) -> EdgeState:
    known = EdgeState()
    for route in routes:
        known.put_route(route)
    if upstream:
        serving = Upstream(address="http://10.0.0.5:9000", deployment_id="d", sequence=5)
        known.put_upstream("svc", "env", serving)
    for name in certified:
        known.certified[name] = "dom"
    return known


def route(name: str, domain_id: str = "dom", **fields: object) -> Route:
    return Route(
        domain_id=domain_id,
        organization_id="org",
        full_domain=name,
        service_id="svc",
        environment_id="env",
        **fields,  # type: ignore[arg-type]
    )


def ask(known: EdgeState, host: str, path: str = "/", *, tls: bool = False,
        sni: str | None = None, method: str = "GET") -> object:  # fmt: skip
    return decide(
        known, tls=tls, host_header=host, sni=sni, method=method, path_qs=path, https_port=443
    )


def test_a_known_host_goes_to_its_services_stable_address() -> None:
    action = ask(state(route("shop.example.com")), "shop.example.com:80", "/a?b=1")
    assert isinstance(action, Forward) and action.address == "http://10.0.0.5:9000"


def test_host_names_are_compared_without_case_port_or_final_dot() -> None:
    assert normal_host("Shop.Example.COM.:8080") == "shop.example.com"
    assert normal_host("[::1]:80") == "[::1]"
    assert isinstance(ask(state(route("shop.example.com")), "SHOP.example.com."), Forward)


def test_a_wildcard_covers_one_label_and_an_exact_name_wins() -> None:
    assert wildcard_of("a.apps.example.com") == "*.apps.example.com"
    assert wildcard_of("example.com") is None  # never `*.com`
    known = state(route("*.apps.example.com", "wild"), route("api.apps.example.com", "exact"))
    exact = ask(known, "api.apps.example.com")
    assert isinstance(exact, Forward) and exact.route.domain_id == "exact"
    wild = ask(known, "web.apps.example.com")
    assert isinstance(wild, Forward) and wild.route.domain_id == "wild"
    deeper = ask(known, "a.b.apps.example.com")
    assert isinstance(deeper, Answer) and deeper.status == 404


def test_an_unknown_host_is_a_plain_404_and_a_route_without_a_deployment_503() -> None:
    action = ask(state(route("shop.example.com")), "other.example.com")
    assert isinstance(action, Answer) and action.status == 404
    waiting = ask(state(route("shop.example.com"), upstream=False), "shop.example.com")
    assert isinstance(waiting, Answer) and waiting.status == 503


def test_challenges_are_answered_over_http_only_and_before_anything_else() -> None:
    known = state(route("shop.example.com", redirect_to="https://elsewhere.example"))
    known.challenges["tok"] = "tok.thumb"
    path = "/.well-known/acme-challenge/tok"
    assert ask(known, "unknown.example.com", path) == Answer(200, "tok.thumb")
    unknown = ask(known, "shop.example.com", "/.well-known/acme-challenge/nope")
    assert isinstance(unknown, Answer) and unknown.status == 404
    over_tls = ask(known, "shop.example.com", path, tls=True, sni="shop.example.com")
    assert isinstance(over_tls, Redirect)  # over TLS it is an ordinary path


def test_host_and_sni_that_disagree_are_misdirected() -> None:
    known = state(route("shop.example.com"), route("admin.example.com", "d2"))
    action = ask(known, "admin.example.com", tls=True, sni="shop.example.com")
    assert isinstance(action, Answer) and action.status == 421
    same = ask(known, "Shop.example.com:443", tls=True, sni="shop.example.com")
    assert isinstance(same, Forward)


def test_redirect_to_keeps_the_path_for_a_bare_origin_and_the_method_for_writes() -> None:
    known = state(route("www.example.com", redirect_to="https://example.com"))
    assert ask(known, "www.example.com", "/x?y=1") == Redirect("https://example.com/x?y=1", 301)
    assert ask(known, "www.example.com", "/f", method="POST") == Redirect(
        "https://example.com/f", 308
    )
    fixed = state(route("old.example.com", redirect_to="https://new.example.com/landing"))
    assert ask(fixed, "old.example.com", "/any") == Redirect("https://new.example.com/landing", 301)


def test_http_goes_to_https_only_once_a_certificate_is_served_and_if_wanted() -> None:
    name = "shop.example.com"
    assert isinstance(ask(state(route(name)), name, "/p"), Forward)
    served = state(route(name), certified=(name,))
    assert ask(served, name, "/p?q") == Redirect("https://shop.example.com/p?q", 301)
    assert isinstance(ask(served, name, "/p", tls=True, sni=name), Forward)
    off = state(route(name, redirect_https=False), certified=(name,))
    assert isinstance(ask(off, name), Forward)
    no_tls = state(route(name, ssl_enabled=False), certified=(name,))
    assert isinstance(ask(no_tls, name), Forward)
    wildcard = state(route("*.apps.example.com"), certified=("*.apps.example.com",))
    assert isinstance(ask(wildcard, "a.apps.example.com"), Redirect)


def test_an_older_upstream_never_replaces_a_newer_one() -> None:
    known = state(route("shop.example.com"))
    known.put_upstream("svc", "env", Upstream(address="http://old", deployment_id="o", sequence=3))
    assert known.upstreams[("svc", "env")].address == "http://10.0.0.5:9000"
    known.put_upstream("svc", "env", Upstream(address="http://new", deployment_id="n", sequence=9))
    assert known.upstreams[("svc", "env")].address == "http://new"


def test_a_route_that_changes_name_is_no_longer_served_under_the_old_one() -> None:
    known = state(route("old.example.com"))
    known.put_route(route("new.example.com"))
    assert isinstance(ask(known, "old.example.com"), Answer)
    assert isinstance(ask(known, "new.example.com"), Forward)
    known.drop_route("dom")
    assert isinstance(ask(known, "new.example.com"), Answer)
