"""Who is calling: the identity the gateway verified, carried to every service.

Identity is owned by services/auth, but every context must know the caller's
organization, role and scopes to enforce its rules, so the shape lives here.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.errors import AuthorizationDenied, NotFound

Role = Literal["owner", "admin", "deployer", "viewer"]
Scope = Literal["read", "write", "deploy", "admin"]
TokenKind = Literal["user", "personal", "service", "deployment"]

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "owner": frozenset({"read", "write", "deploy", "admin"}),
    "admin": frozenset({"read", "write", "deploy", "admin"}),
    "deployer": frozenset({"read", "write", "deploy"}),
    "viewer": frozenset({"read"}),
}

ROLE_RANK: dict[str, int] = {"viewer": 0, "deployer": 1, "admin": 2, "owner": 3}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A verified caller. `scopes` is what the credential allows; roles cap it per org."""

    user_id: str
    kind: TokenKind = "user"
    organization_id: str | None = None
    memberships: dict[str, str] = msgspec.field(default_factory=dict)
    scopes: tuple[str, ...] = ("read", "write", "deploy", "admin")
    is_superuser: bool = False
    session_id: str | None = None
    token_id: str | None = None
    # Set on service and deployment tokens: the one resource they may act on.
    service_id: str | None = None
    deployment_id: str | None = None

    def role_in(self, organization_id: str) -> str | None:
        return self.memberships.get(organization_id)

    def can(self, scope: str, organization_id: str | None = None) -> bool:
        """Whether this caller may use `scope` in `organization_id` (or its own org)."""
        if scope not in self.scopes:
            return False
        if self.is_superuser:
            return True
        org = organization_id or self.organization_id
        if org is None:
            return False
        role = self.memberships.get(org)
        return role is not None and scope in ROLE_SCOPES[role]


SYSTEM = Principal(user_id="system", is_superuser=True)


def require(
    actor: Principal, scope: str, organization_id: str | None, *, field: str | None = None
) -> None:
    """404 to outsiders (ids of other organizations do not exist for them), 403 to
    members whose role or credential lacks `scope`."""
    details = {"field": field} if field else None
    if organization_id is None:
        raise NotFound("not found", details)
    if not actor.is_superuser and actor.role_in(organization_id) is None:
        raise NotFound("not found", details)
    if not actor.can(scope, organization_id):
        raise AuthorizationDenied(f"this needs the '{scope}' permission in the organization")
