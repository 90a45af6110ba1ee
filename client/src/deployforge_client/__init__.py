"""DeployForge's Python SDK, on the public /v1 API only.

from deployforge_client import DeployForge
with DeployForge("https://deploy.example.com", token) as df:
    run = df.services.deploy(service_id, environment_id=env_id)
    for event in run.stream():
        ...
    print(run.wait()["status"])
"""

from deployforge_client._async import AsyncDeployForge
from deployforge_client._core import ServerSentEvent
from deployforge_client._sync import DeployForge
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
