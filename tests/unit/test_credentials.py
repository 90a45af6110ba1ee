"""The shapes of bearer credentials: what we mint parses back, anything else is refused."""

from __future__ import annotations

import pytest

from libs.credentials import (
    looks_like_api_token,
    new_refresh_token,
    new_token,
    parse_api_token,
    parse_refresh_token,
)


@pytest.mark.parametrize(
    ("kind", "letter"), [("personal", "p"), ("service", "s"), ("deployment", "d")]
)
def test_a_new_token_parses_back_to_its_kind_id_and_secret(kind: str, letter: str) -> None:
    token_id, token, prefix = new_token(kind)

    parsed = parse_api_token(token)

    assert parsed is not None
    assert (parsed.kind, parsed.entity_id) == (kind, token_id)
    assert token == f"df{letter}_{token_id.removeprefix('tok_')}_{parsed.secret}"
    assert len(parsed.secret) == 40
    assert token.startswith(prefix)
    assert len(prefix) == 12
    assert prefix.startswith(f"df{letter}_")


def test_every_new_token_has_a_different_id_and_secret() -> None:
    tokens = [new_token("personal") for _ in range(20)]

    assert len({token_id for token_id, _, _ in tokens}) == 20
    assert len({token for _, token, _ in tokens}) == 20


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "dfp",
        "dfp_",
        "dfp_abc",
        "dfp_abc_",
        "dfp__secret",
        "dfx_abc_secret",
        "dfpp_abc_secret",
        "xxp_abc_secret",
        "DFP_abc_secret",
        "dfr_abc_secret",
        "dfp_abc_sec_ret",
        "dfp_abc_sec-ret",
        "dfp_ab c_secret",
        "dfp_abc_secret\n",
        "-dfp_abc_secret",
        "--token=dfp_abc_secret",
        "dfp_-abc_secret",
        "dfp_abc_-secret",
        "Bearer dfp_abc_secret",
    ],
)
def test_malformed_and_option_like_strings_are_not_api_tokens(malformed: str) -> None:
    assert parse_api_token(malformed) is None
    assert not looks_like_api_token(malformed)


def test_a_refresh_token_parses_back_to_its_session() -> None:
    token = new_refresh_token("ses_AbC123")

    parsed = parse_refresh_token(token)

    assert parsed is not None
    assert (parsed.kind, parsed.entity_id) == ("refresh", "ses_AbC123")
    assert token == f"dfr_AbC123_{parsed.secret}"
    assert len(parsed.secret) == 40


def test_refresh_and_api_tokens_are_not_mistaken_for_each_other() -> None:
    _, api_token, _ = new_token("personal")
    refresh_token = new_refresh_token("ses_AbC123")

    assert parse_refresh_token(api_token) is None
    assert parse_api_token(refresh_token) is None


@pytest.mark.parametrize(
    "malformed",
    ["", "dfr", "dfr_", "dfr_abc", "dfr__secret", "dfr_abc_", "dfr_abc_sec_ret", "-dfr_abc_x"],
)
def test_malformed_refresh_tokens_are_refused(malformed: str) -> None:
    assert parse_refresh_token(malformed) is None
