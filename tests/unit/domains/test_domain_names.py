"""Domain names at the door: one spelling per name, and what nobody may claim."""

from __future__ import annotations

import pytest

from libs.errors import ValidationFailed
from services.domains.names import challenge_record, claim_key, normalize, registered_domain


@pytest.mark.parametrize(
    ("domain", "subdomain", "challenge", "stored"),
    [
        ("Example.COM.", None, "http-01", "example.com"),
        ("example.com", "App", "http-01", "app.example.com"),
        ("Bücher.example", None, "http-01", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", None, "http-01", "xn--bcher-kva.example"),
        ("shop.example.co.uk", None, "http-01", "shop.example.co.uk"),
        ("example.com", "*", "dns-01", "*.example.com"),
        ("*.example.com", None, "dns-01", "*.example.com"),
        ("example.com", "*.eu", "dns-01", "*.eu.example.com"),
    ],
)
def test_a_name_is_stored_as_its_lowercase_a_label(
    domain: str, subdomain: str | None, challenge: str, stored: str
) -> None:
    assert normalize(domain, subdomain, challenge) == stored


@pytest.mark.parametrize(
    ("domain", "subdomain", "challenge", "field"),
    [
        ("192.0.2.1", None, "http-01", "$.domain"),
        ("2001:db8::1", None, "http-01", "$.domain"),
        ("co.uk", None, "http-01", "$.domain"),
        ("github.io", None, "http-01", "$.domain"),
        ("com", None, "http-01", "$.domain"),
        ("exa mple.com", None, "http-01", "$.domain"),
        ("-bad.example.com", None, "http-01", "$.domain"),
        ("example.com", "a..b", "http-01", "$.subdomain"),
        ("example.com", "*", "http-01", "$.challenge"),
        ("a.*.example.com", None, "dns-01", "$.domain"),
        ("x" * 64 + ".com", None, "http-01", "$.domain"),
        ("example.com", ".".join(["a" * 60] * 4), "http-01", "$.subdomain"),
    ],
)
def test_what_nobody_may_claim_is_refused_naming_the_field(
    domain: str, subdomain: str | None, challenge: str, field: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        normalize(domain, subdomain, challenge)
    assert refused.value.details["field"] == field


def test_one_claim_per_spelling_and_the_records_named_after_the_name() -> None:
    assert claim_key(normalize("BÜCHER.example", None, "http-01")) == claim_key(
        "xn--bcher-kva.example"
    )
    assert challenge_record("*.example.com") == "_deployforge-challenge.example.com"
    assert registered_domain("www.shop.example.co.uk") == "example.co.uk"


def test_caa_allows_the_named_ca_and_refuses_the_others() -> None:
    from services.domains.dns_lookup import caa_refusal

    le = {"letsencrypt.org"}
    assert caa_refusal([], le, wildcard=False) is None
    assert caa_refusal([(0, "issue", "letsencrypt.org")], le, wildcard=False) is None
    assert caa_refusal([(0, "issue", "letsencrypt.org; validationmethods=dns-01")], le,
                       wildcard=False) is None  # fmt: skip
    refusal = caa_refusal([(0, "issue", "sectigo.com")], le, wildcard=False)
    assert refusal == "CAA records allow only sectigo.com to issue for this name"
    assert caa_refusal([(0, "issue", ";")], le, wildcard=False) is not None  # nobody may
    # issuewild rules wildcards when present; issue rules them otherwise.
    both = [(0, "issue", "letsencrypt.org"), (0, "issuewild", "sectigo.com")]
    assert caa_refusal(both, le, wildcard=False) is None
    assert caa_refusal(both, le, wildcard=True) is not None
    assert caa_refusal([(0, "iodef", "mailto:x@example.com")], le, wildcard=False) is None
    assert caa_refusal([(128, "tbs", "x")], le, wildcard=False) is not None
