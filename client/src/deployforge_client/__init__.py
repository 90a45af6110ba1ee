"""DeployForge's Python SDK, on the public /v1 API only.

from deployforge_client import DeployForge
with DeployForge("https://deploy.example.com", token) as df:
    run = df.services.deploy(service_id, environment_id=env_id)
    for event in run.stream():
        ...
    print(run.wait()["status"])
"""

from typing import TYPE_CHECKING, Any

from deployforge_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationRequired,
    AuthorizationDenied,
    Conflict,
    DeployForgeError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
    WaitTimedOut,
)

if TYPE_CHECKING:
    from deployforge_client._async import AsyncDeployForge
    from deployforge_client._core import ServerSentEvent
    from deployforge_client._sync import DeployForge

# The clients load httpx (a tenth of a second): imported when first asked for, so that
# `dfctl --help` and the exceptions cost nothing of it.
_LAZY = {
    "DeployForge": "deployforge_client._sync",
    "AsyncDeployForge": "deployforge_client._async",
    "ServerSentEvent": "deployforge_client._core",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deployforge_client' has no attribute {name!r}")


__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncDeployForge",
    "AuthenticationRequired",
    "AuthorizationDenied",
    "Conflict",
    "DeployForge",
    "DeployForgeError",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "RateLimited",
    "ServerSentEvent",
    "ServiceUnavailable",
    "ValidationError",
    "WaitTimedOut",
]
