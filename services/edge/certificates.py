"""The certificates an edge serves, chosen by SNI from memory and swapped live.

Each served certificate gets its own `ssl.SSLContext`, built once when its
entry arrives (the key is opened with the master key, written to a private
temporary file for `load_cert_chain`, which reads only files, and unlinked at
once). The listening context's SNI callback moves each handshake to the
context of the name asked for: exact name first, then the wildcard covering
it. A name no certificate covers gets the edge's own self-signed fallback, so
the handshake completes and the request is answered 421 or 404 rather than
with a reset.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from libs.crypto import SecretBox
from services.edge.routing import wildcard_of
from services.edge.table import KEY_PURPOSE, ServedCertificate

# Set on each TLS connection's SSLObject by the SNI callback: the name the client asked for.
SNI_ATTRIBUTE = "deployforge_sni"
FALLBACK_NAME = "deployforge-edge.invalid"


def server_context(ctx_pem: tuple[bytes, bytes]) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+, HTTP/1.1 by ALPN) with the chain and key given."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    chain, key = ctx_pem
    with tempfile.TemporaryDirectory(prefix="deployforge-edge-") as folder:
        os.chmod(folder, 0o700)
        chain_path, key_path = Path(folder, "chain.pem"), Path(folder, "key.pem")
        chain_path.write_bytes(chain)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        try:
            ctx.load_cert_chain(chain_path, key_path)
        finally:
            key_path.unlink()
    return ctx


def self_signed(name: str = FALLBACK_NAME) -> tuple[bytes, bytes]:
    """A throwaway certificate and key for `name` (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


class CertificateStore:
    """The served certificates by domain id and by name, and the listening context."""

    def __init__(self, box: SecretBox | None) -> None:
        self._box = box
        self._contexts: dict[str, ssl.SSLContext] = {}  # domain id -> context
        self._names: dict[str, str] = {}  # name -> domain id
        self._entries: dict[str, ServedCertificate] = {}
        self.listening = server_context(self_signed())
        self.listening.sni_callback = self._choose

    def put(self, entry: ServedCertificate) -> None:
        """Serve `entry` from the next handshake on (replacing the domain's previous one)."""
        if self._box is None:
            raise RuntimeError("the edge needs DEPLOYFORGE_SECRET_KEY to serve certificates")
        key = self._box.open(entry.sealed_key, purpose=KEY_PURPOSE)
        context = server_context((entry.fullchain_pem.encode(), key))
        self.drop(entry.domain_id)
        self._contexts[entry.domain_id] = context
        self._entries[entry.domain_id] = entry
        for name in entry.names:
            self._names[name.lower()] = entry.domain_id

    def drop(self, domain_id: str) -> None:
        old = self._entries.pop(domain_id, None)
        self._contexts.pop(domain_id, None)
        if old is not None:
            for name in old.names:
                if self._names.get(name.lower()) == domain_id:
                    del self._names[name.lower()]

    @property
    def by_name(self) -> dict[str, str]:
        """Every name served, with the domain whose certificate covers it (live: the
        routing state reads this very mapping)."""
        return self._names

    def entry_for(self, name: str) -> ServedCertificate | None:
        domain_id = self._names.get(name) or self._names.get(wildcard_of(name) or "")
        return self._entries.get(domain_id) if domain_id else None

    def __len__(self) -> int:
        return len(self._contexts)

    def _choose(self, conn: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        name = server_name.lower().rstrip(".") if server_name else None
        with contextlib.suppress(AttributeError):
            setattr(conn, SNI_ATTRIBUTE, name)
        if name is None:
            return
        domain_id = self._names.get(name) or self._names.get(wildcard_of(name) or "")
        context = self._contexts.get(domain_id) if domain_id else None
        if context is not None:
            conn.context = context
