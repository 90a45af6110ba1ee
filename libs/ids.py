"""Prefixed, sortable-enough random identifiers (`usr_8HbN3jK7fGq2`)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 16) -> str:
    """A fresh id such as `usr_8HbN3jK7fGq2Lm0P`: a type prefix and base62 randomness."""
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def random_secret(length: int = 40) -> str:
    """A base62 secret with about 6 bits of entropy per character."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
