"""Domain errors and the one table that maps them to HTTP statuses.

Services raise these; the messaging layer carries them across NATS by code;
the gateway renders them in the error envelope of DESIGN.md.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"
    AUTHORIZATION_DENIED = "AUTHORIZATION_DENIED"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    CONFLICT = "CONFLICT"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.AUTHENTICATION_REQUIRED: 401,
    ErrorCode.AUTHORIZATION_DENIED: 403,
    ErrorCode.RESOURCE_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMIT_EXCEEDED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
}


class DomainError(Exception):
    """A failure the caller can act on; its message is safe to show."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        # Bad input shares one code; the status still tells malformed (400),
        # too large (413) and wrong media type (415) apart from invalid (422).
        self._status = status

    @property
    def status(self) -> int:
        return self._status or HTTP_STATUS[self.code]


class ValidationFailed(DomainError):
    code = ErrorCode.VALIDATION_ERROR

    def __init__(
        self, message: str, field: str | None = None, *, status: int | None = None, **details: Any
    ) -> None:
        if field is not None:
            details["field"] = field
        super().__init__(message, details, status=status)


class AuthenticationRequired(DomainError):
    code = ErrorCode.AUTHENTICATION_REQUIRED


class AuthorizationDenied(DomainError):
    code = ErrorCode.AUTHORIZATION_DENIED


class NotFound(DomainError):
    code = ErrorCode.RESOURCE_NOT_FOUND


class Conflict(DomainError):
    code = ErrorCode.CONFLICT


class RateLimited(DomainError):
    code = ErrorCode.RATE_LIMIT_EXCEEDED


class ServiceUnavailable(DomainError):
    code = ErrorCode.SERVICE_UNAVAILABLE


_BY_CODE: dict[ErrorCode, type[DomainError]] = {
    cls.code: cls
    for cls in (
        ValidationFailed,
        AuthenticationRequired,
        AuthorizationDenied,
        NotFound,
        Conflict,
        RateLimited,
        ServiceUnavailable,
    )
}


def error_from_code(code: str, message: str, details: dict[str, Any] | None = None) -> DomainError:
    """Rebuild a DomainError received over the wire (unknown codes become internal)."""
    try:
        cls = _BY_CODE[ErrorCode(code)]
    except (ValueError, KeyError):
        err = DomainError(message, details)
        return err
    err = cls.__new__(cls)
    DomainError.__init__(err, message, details)
    return err


_MISSING_OR_UNKNOWN = re.compile(r"(?:required|unknown) field `([^`]+)`")


def validation_field(message: str) -> str:
    """The JSON path a msgspec validation message is about.

    "Expected `str`, got `int` - at `$.email`" -> `$.email`;
    "Object missing required field `email`" -> `$.email`;
    "Object contains unknown field `x` - at `$.config`" -> `$.config.x`.
    """
    path = "$"
    if " - at `" in message:
        path = message.rsplit(" - at `", 1)[1].rstrip("`")
    named = _MISSING_OR_UNKNOWN.search(message)
    if named:
        path = f"{path}.{named.group(1)}"
    return path


def validation_message(message: str) -> str:
    """The message without its location suffix (the field is reported separately)."""
    return message.split(" - at `", 1)[0]
