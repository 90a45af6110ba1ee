"""One exception class per error code of the API's envelope, each carrying the
envelope's `details` and the `request_id` to quote in a support request."""

from __future__ import annotations

from typing import Any


class DeployForgeError(Exception):
    """Anything the SDK raises."""


class APIConnectionError(DeployForgeError):
    """The server could not be reached, or the connection broke (after the retries)."""


class APIError(DeployForgeError):
    """An answer in the error envelope: `{"error": {code, message, details, request_id}}`."""

    code = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details or {}
        self.request_id = request_id
        self.headers = headers or {}

    @property
    def field(self) -> str | None:
        """The field a validation error names (`$.name`, a header, a query parameter)."""
        field = self.details.get("field")
        return str(field) if field is not None else None

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        request = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.status} {self.code}: {self.message}{where}{request}"


class ValidationError(APIError):
    code = "VALIDATION_ERROR"


class AuthenticationRequired(APIError):
    code = "AUTHENTICATION_REQUIRED"


class AuthorizationDenied(APIError):
    code = "AUTHORIZATION_DENIED"


class NotFound(APIError):
    code = "RESOURCE_NOT_FOUND"


class MethodNotAllowed(APIError):
    code = "METHOD_NOT_ALLOWED"


class Conflict(APIError):
    code = "CONFLICT"


class RateLimited(APIError):
    code = "RATE_LIMIT_EXCEEDED"

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class InternalError(APIError):
    code = "INTERNAL_ERROR"


class ServiceUnavailable(APIError):
    code = "SERVICE_UNAVAILABLE"


BY_CODE: dict[str, type[APIError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        AuthenticationRequired,
        AuthorizationDenied,
        NotFound,
        MethodNotAllowed,
        Conflict,
        RateLimited,
        InternalError,
        ServiceUnavailable,
    )
}


class WaitTimedOut(DeployForgeError):
    """A deployment did not end within the time waited (it goes on: cancel it, or wait
    again)."""

    def __init__(self, deployment_id: str, status: str, timeout: float) -> None:
        super().__init__(
            f"deployment {deployment_id} is still {status} after {timeout:g} s"
            f" (cancel it with POST /v1/deployments/{deployment_id}/cancel)"
        )
        self.deployment_id = deployment_id
        self.status = status
