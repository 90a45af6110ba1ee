"""The identity service's NATS micro endpoints: decode, call the handler, encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from libs.messaging import CommandContext, Endpoint, Reply
from services.auth import commands as c
from services.auth import handlers as h
from services.auth.handlers import AuthDeps

C = TypeVar("C", bound=msgspec.Struct)

SERVICE = "auth"


def _bind(
    deps: AuthDeps,
    command: type[C],
    handler: Callable[[AuthDeps, C, CommandContext], Awaitable[Reply]],
) -> Endpoint[C]:
    async def call(cmd: C, ctx: CommandContext) -> Reply:
        return await handler(deps, cmd, ctx)

    return Endpoint(command, call)


def endpoints(deps: AuthDeps) -> dict[str, Endpoint[Any]]:
    return {
        "login": _bind(deps, c.Login, h.login),
        "refresh": _bind(deps, c.Refresh, h.refresh),
        "logout": _bind(deps, c.Logout, h.logout),
        "create_user": _bind(deps, c.CreateUser, h.create_user),
        "create_organization": _bind(deps, c.CreateOrganization, h.create_organization),
        "add_member": _bind(deps, c.AddMember, h.add_member),
        "change_member_role": _bind(deps, c.ChangeMemberRole, h.change_member_role),
        "remove_member": _bind(deps, c.RemoveMember, h.remove_member),
        "issue_token": _bind(deps, c.IssueToken, h.issue_token),
        "revoke_token": _bind(deps, c.RevokeToken, h.revoke_token),
        "bootstrap_admin": _bind(deps, c.BootstrapAdmin, h.bootstrap_admin),
        "ensure_signing_key": _bind(deps, c.EnsureSigningKey, h.ensure_signing_key),
    }
