"""Which organization a request is about, and whether the caller may see a row.

Collection routes exist twice: under `/v1/organizations/{org_id}/...` and
without the organization, meaning the caller's default one, so clients written
against the seeds' shapes keep working. Another organization's ids answer 404.
"""

from __future__ import annotations

from aiohttp import web

from libs.errors import NotFound, ValidationFailed
from libs.principal import Principal


def can_see(principal: Principal, organization_id: str | None) -> bool:
    if organization_id is None:
        return False
    return principal.is_superuser or organization_id in principal.memberships


def request_org(request: web.Request, principal: Principal) -> str:
    """The organization a collection route is about; 404 if the caller is not in it."""
    if principal.deployment_id is not None:
        # A deployment token reaches its own deployment, never a collection.
        raise NotFound("not found")
    org = request.match_info.get("org_id") or principal.organization_id
    if org is None:
        raise ValidationFailed("name an organization: /v1/organizations/{org_id}/...", "org_id")
    if not can_see(principal, org):
        raise NotFound("organization not found")
    return org


def require_visible(
    principal: Principal,
    organization_id: str | None,
    what: str,
    *,
    deployment_token_ok: bool = False,
) -> None:
    """404 unless the caller belongs to the organization that owns the row (and, for a
    deployment token, unless the row is a deployment, which the caller then checks)."""
    if principal.deployment_id is not None and not deployment_token_ok:
        raise NotFound(f"{what} not found")
    if not can_see(principal, organization_id):
        raise NotFound(f"{what} not found")
