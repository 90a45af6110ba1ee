"""Verifying DeployForge's webhooks (Standard Webhooks signatures).

    from deployforge_client.webhooks import verify
    event = verify(secret, request_body, request_headers)

During a rotation DeployForge signs with both the old and the new secret: give the
receiver either one (or both, as a list) and the delivery verifies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "verify"]


def verify(
    secret: str | Sequence[str], body: bytes | str, headers: Mapping[str, str]
) -> dict[str, Any]:
    """The event delivered, once its signature and timestamp check out with one of the
    secrets; WebhookVerificationError otherwise."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise WebhookVerificationError("no secret to verify with")
    lowered = {k.lower(): v for k, v in headers.items()}
    failure: WebhookVerificationError | None = None
    for one in secrets:
        try:
            event: dict[str, Any] = Webhook(one).verify(body, lowered)
            return event
        except WebhookVerificationError as exc:
            failure = exc
    assert failure is not None
    raise failure
