"""Secrets at rest: sealing with the suite's master key, hashing of tokens.

Sealed values are AES-256-GCM with a random nonce, stored as
`v1.<base64 nonce+ciphertext>`; the master key comes from
`DEPLOYFORGE_SECRET_KEY` (32 bytes, base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretBox:
    """Seals and opens small secrets with one master key."""

    def __init__(self, key_b64: str) -> None:
        key = base64.b64decode(key_b64) if key_b64 else b""
        if len(key) != 32:
            raise ValueError("DEPLOYFORGE_SECRET_KEY must be 32 bytes, base64-encoded")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, *, purpose: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, purpose.encode())
        return "v1." + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, purpose: str) -> bytes:
        version, _, body = sealed.partition(".")
        if version != "v1":
            raise ValueError(f"unknown sealed format {version!r}")
        raw = base64.b64decode(body)
        return self._aead.decrypt(raw[:12], raw[12:], purpose.encode())


def generate_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def token_hash(secret: str) -> str:
    """SHA-256 of a high-entropy token: enough, and fast enough for every request."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
