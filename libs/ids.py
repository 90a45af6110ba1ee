"""Prefixed random identifiers (`usr_8HbN3jK7fGq2Lm0P`) and base62 secrets."""

from __future__ import annotations

import os
import string

_ALPHABET = string.ascii_letters + string.digits
# Bytes at or above 248 (= 4 * 62) are dropped so that every character is
# equally likely: no modulo bias, in secrets or in ids.
_UNBIASED_BELOW = 248


def _base62(length: int) -> str:
    out: list[str] = []
    while len(out) < length:
        for byte in os.urandom(length + 8):
            if byte < _UNBIASED_BELOW:
                out.append(_ALPHABET[byte % 62])
                if len(out) == length:
                    break
    return "".join(out)


def new_id(prefix: str, length: int = 16) -> str:
    """A fresh id such as `usr_8HbN3jK7fGq2Lm0P`: a type prefix and base62 randomness."""
    return f"{prefix}_{_base62(length)}"


def random_secret(length: int = 40) -> str:
    """A base62 secret: about 5.95 bits of entropy per character (238 bits at 40)."""
    return _base62(length)
