"""The gateway's settings (`DEPLOYFORGE_*`)."""

from __future__ import annotations

from libs.settings import CoreSettings


class GatewaySettings(CoreSettings, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    # Per credential (token, session) per minute; anonymous callers per address.
    rate_limit_per_minute: int = 100
    anonymous_rate_limit_per_minute: int = 60
    # How long a read carrying X-Consistency-Token may wait for the read model.
    consistency_wait_ms: int = 2000
    jwt_issuer: str = "deployforge"
    jwt_audience: str = "deployforge"
    access_token_ttl_seconds: int = 900
    command_timeout_seconds: float = 10.0
    # Trust X-Forwarded-For for the client address (only behind your own proxy).
    trust_forwarded_for: bool = False
    # Where domains must point (shown as the DNS records to create; the domains
    # service reads the same variables to check them).
    edge_public_addresses: str = ""
    edge_public_hostname: str = ""
