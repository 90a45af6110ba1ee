"""Ed25519 keys that sign access tokens, and the access tokens themselves."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.crypto import SecretBox
from libs.ids import new_id
from services.auth.decider import SigningKey
from services.auth.events import SigningKeyAdded

ALGORITHM = "EdDSA"
KEY_PURPOSE = "jwt-signing-key"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_key(box: SecretBox, now: datetime) -> SigningKeyAdded:
    """A fresh key pair as the event that adds it: public in clear, private sealed."""
    private = Ed25519PrivateKey.generate()
    public_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    private_raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return SigningKeyAdded(
        kid=new_id("key", 12),
        public_key=_b64url(public_raw),
        private_key_sealed=box.seal(private_raw, purpose=KEY_PURPOSE),
        added_at=now,
    )


def public_jwk(kid: str, public_key: str) -> dict[str, str]:
    """The JWKS entry for a key (RFC 8037 OKP)."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": public_key,
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


class AccessTokenSigner:
    """Signs short-lived access JWTs with the keyring's active key."""

    def __init__(self, box: SecretBox, *, issuer: str, audience: str, ttl: timedelta) -> None:
        self.box = box
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._opened: dict[str, Ed25519PrivateKey] = {}

    def _private(self, key: SigningKey) -> Ed25519PrivateKey:
        if key.kid not in self._opened:
            raw = self.box.open(key.private_key_sealed, purpose=KEY_PURPOSE)
            self._opened[key.kid] = Ed25519PrivateKey.from_private_bytes(raw)
        return self._opened[key.kid]

    def sign(
        self,
        key: SigningKey,
        *,
        user_id: str,
        session_id: str,
        organization_id: str | None,
        now: datetime,
    ) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "sid": session_id,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": new_id("jti", 12),
            "typ": "access",
        }
        if organization_id:
            claims["org"] = organization_id
        return jwt.encode(claims, self._private(key), algorithm=ALGORITHM, headers={"kid": key.kid})
