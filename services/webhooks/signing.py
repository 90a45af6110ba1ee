"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A secret is `whsec_` and the base64 of its key. Each delivery carries
`webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`:
`v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`, one per
signing secret, separated by spaces while a rotated-out secret still signs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def generate_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(32)).decode()


def secret_error(secret: str) -> str | None:
    """Why `secret` cannot sign, or None when it can."""
    if not secret.startswith(PREFIX):
        return f"a secret starts with '{PREFIX}' followed by base64 (omit it to have one generated)"
    try:
        key = _key(secret)
    except (binascii.Error, ValueError):
        return f"the part after '{PREFIX}' must be base64"
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        return f"the key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
    return None


def _key(secret: str) -> bytes:
    """The HMAC key: the base64 after the prefix, padded or not (as Svix prints them)."""
    encoded = secret.removeprefix(PREFIX)
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }
