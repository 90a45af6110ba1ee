"""The shapes of DeployForge's bearer credentials.

API tokens read `df<kind>_<id>_<secret>`: a recognisable prefix that secret
scanners can match, the token's id (so the gateway finds its record with one
indexed lookup) and 40 base62 characters of secret, of which only a SHA-256
is ever stored. Refresh tokens read `dfr_<session id>_<secret>`.
"""

from __future__ import annotations

from typing import Literal

from libs.ids import new_id, random_secret

KIND_LETTER: dict[str, str] = {"personal": "p", "service": "s", "deployment": "d"}
LETTER_KIND = {v: k for k, v in KIND_LETTER.items()}
SessionOrToken = Literal["token", "refresh"]


class ParsedToken:
    __slots__ = ("entity_id", "kind", "secret")

    def __init__(self, kind: str, entity_id: str, secret: str) -> None:
        self.kind = kind
        self.entity_id = entity_id
        self.secret = secret


def new_token(kind: str) -> tuple[str, str, str]:
    """(token id, the whole token to show once, its display prefix)."""
    token_id = new_id("tok")
    raw = token_id.removeprefix("tok_")
    secret = random_secret()
    token = f"df{KIND_LETTER[kind]}_{raw}_{secret}"
    return token_id, token, token[:12]


def new_refresh_token(session_id: str) -> str:
    return f"dfr_{session_id.removeprefix('ses_')}_{random_secret()}"


def parse_api_token(token: str) -> ParsedToken | None:
    """The kind, token id and secret of an API token, or None if it is not one."""
    head, sep, rest = token.partition("_")
    if not sep or len(head) != 3 or not head.startswith("df") or head[2] not in LETTER_KIND:
        return None
    raw, sep, secret = rest.partition("_")
    if not sep or not raw.isalnum() or not secret.isalnum():
        return None
    return ParsedToken(LETTER_KIND[head[2]], "tok_" + raw, secret)


def parse_refresh_token(token: str) -> ParsedToken | None:
    head, sep, rest = token.partition("_")
    if head != "dfr" or not sep:
        return None
    raw, sep, secret = rest.partition("_")
    if not sep or not raw.isalnum() or not secret.isalnum():
        return None
    return ParsedToken("refresh", "ses_" + raw, secret)


def looks_like_api_token(token: str) -> bool:
    return parse_api_token(token) is not None
