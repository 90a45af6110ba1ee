"""What the edge serves, as entries of one KV bucket (`<namespace>_edge`).

The domains context writes the bucket from events (its edge publisher and its
ACME worker); every edge replica watches it, loads all of it before it says it
is ready, and applies each change as it comes. Keys:

- `route.<domain_id>`: a verified domain and where it goes (`Route`);
- `upstream.<service_id>.<environment_id>`: the stable address serving that
  service there, from its last successful deployment (`Upstream`);
- `cert.<domain_id>`: the certificate served for the domain, its key sealed
  with the installation's master key (`ServedCertificate`);
- `challenge.<token>`: the key authorization of a pending ACME HTTP-01
  challenge (`Challenge`).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from libs.kv import bucket_name as named_bucket
from libs.kv import file_bucket


class Route(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str
    organization_id: str
    full_domain: str  # the A-label; `*.` first for a wildcard
    service_id: str
    environment_id: str
    redirect_to: str | None = None
    # HTTP is redirected to HTTPS once a certificate is served, unless turned off
    # (or TLS is off for the domain altogether).
    redirect_https: bool = True
    ssl_enabled: bool = True


class Upstream(msgspec.Struct, frozen=True, kw_only=True):
    address: str  # http://host:port of the stable address
    deployment_id: str
    # The deploy stream's sequence of the success: an older one never overwrites a newer.
    sequence: int


class ServedCertificate(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str
    names: list[str]  # the SANs
    fullchain_pem: str
    sealed_key: str  # SecretBox(purpose=KEY_PURPOSE) of the PEM private key
    serial: str
    not_after: datetime


class Challenge(msgspec.Struct, frozen=True, kw_only=True):
    key_authorization: str
    domain: str


KEY_PURPOSE = "certificate-key"


def bucket_name(namespace: str) -> str:
    return named_bucket(namespace, "edge")


async def bucket(js: JetStreamContext, namespace: str, replicas: int = 1) -> KeyValue:
    return await file_bucket(js, bucket_name(namespace), replicas)


def route_key(domain_id: str) -> str:
    return f"route.{domain_id}"


def upstream_key(service_id: str, environment_id: str) -> str:
    return f"upstream.{service_id}.{environment_id}"


def certificate_key(domain_id: str) -> str:
    return f"cert.{domain_id}"


def challenge_key(token: str) -> str:
    return f"challenge.{token}"


encode = msgspec.json.Encoder().encode
ROUTE = msgspec.json.Decoder(Route)
UPSTREAM = msgspec.json.Decoder(Upstream)
CERTIFICATE = msgspec.json.Decoder(ServedCertificate)
CHALLENGE = msgspec.json.Decoder(Challenge)
