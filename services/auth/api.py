"""The identity service's NATS micro endpoints: decode, call the handler, encode."""

from __future__ import annotations

from typing import Any

from libs.messaging import Endpoint, bind
from services.auth import commands as c
from services.auth import handlers as h
from services.auth.handlers import AuthDeps

SERVICE = "auth"


def endpoints(deps: AuthDeps) -> dict[str, Endpoint[Any]]:
    return {
        "login": bind(deps, c.Login, h.login),
        "refresh": bind(deps, c.Refresh, h.refresh),
        "logout": bind(deps, c.Logout, h.logout),
        "create_user": bind(deps, c.CreateUser, h.create_user),
        "create_organization": bind(deps, c.CreateOrganization, h.create_organization),
        "add_member": bind(deps, c.AddMember, h.add_member),
        "change_member_role": bind(deps, c.ChangeMemberRole, h.change_member_role),
        "remove_member": bind(deps, c.RemoveMember, h.remove_member),
        "issue_token": bind(deps, c.IssueToken, h.issue_token),
        "revoke_token": bind(deps, c.RevokeToken, h.revoke_token),
        "issue_deployment_token": bind(deps, c.IssueDeploymentToken, h.issue_deployment_token),
        "bootstrap_admin": bind(deps, c.BootstrapAdmin, h.bootstrap_admin),
        "ensure_signing_key": bind(deps, c.EnsureSigningKey, h.ensure_signing_key),
    }
