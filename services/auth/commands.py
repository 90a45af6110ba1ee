"""The commands the identity service accepts over NATS.

These are also the HTTP request bodies the gateway validates, so their
constraints are the API's: a bad field is a 422 naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Email = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Email address",
    ),
]
Password = Annotated[str, Meta(min_length=8, max_length=512)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Slug = Annotated[
    str, Meta(min_length=2, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
]
RoleName = Literal["owner", "admin", "deployer", "viewer"]
ScopeName = Literal["read", "write", "deploy", "admin"]
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Login(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, Meta(min_length=1, max_length=512)]
    organization_id: Id | None = None


class Refresh(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=512)]


class Logout(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: Id | None = None
    refresh_token: Annotated[str, Meta(min_length=1, max_length=512)] | None = None


class CreateUser(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name
    organization_id: Id | None = None
    role: RoleName = "viewer"


class CreateOrganization(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    slug: Slug | None = None


class AddMember(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id
    user_id: Id
    role: RoleName


class ChangeMemberRole(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id
    user_id: Id
    role: RoleName


class RemoveMember(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id
    user_id: Id


class IssueToken(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    scopes: Annotated[list[ScopeName], Meta(min_length=1, max_length=4)]
    expires_in_days: Annotated[int, Meta(ge=1, le=3650)] | None = None
    organization_id: Id | None = None
    kind: Literal["personal", "service", "deployment"] = "personal"
    service_id: Id | None = None
    deployment_id: Id | None = None


class IssueDeploymentToken(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From the deploy service: a token for one deployment's scripts to report with,
    on behalf of the user who started it."""

    deployment_id: Id
    organization_id: Id
    user_id: Id
    expires_in_days: Annotated[int, Meta(ge=1, le=7)] = 1


class RevokeToken(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token_id: Id


class BootstrapAdmin(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name = "Administrator"


class EnsureSigningKey(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_age_days: Annotated[int, Meta(ge=1)] = 30


# Replies


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class IssuedToken(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    token: str
    kind: str
    prefix: str
    scopes: list[str]
    organization_id: str | None
    expires_at: str | None
    created_at: str


class Created(msgspec.Struct, frozen=True, kw_only=True):
    id: str


class BootstrapResult(msgspec.Struct, frozen=True, kw_only=True):
    created: bool
    user_id: str
    organization_id: str
