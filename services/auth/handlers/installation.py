"""The installation's first administrator and default organization."""

from __future__ import annotations

from libs.aggregate import load_state
from libs.messaging import CommandContext, Reply
from services.auth import decider as d
from services.auth.commands import BootstrapAdmin, BootstrapResult
from services.auth.handlers.aggregates import (
    BOOTSTRAP,
    EMAILS,
    USERS,
    AuthDeps,
    email_key,
    position,
)
from services.auth.handlers.members import _create_org, _register


async def bootstrap_admin(deps: AuthDeps, cmd: BootstrapAdmin, ctx: CommandContext) -> Reply:
    """Create the first administrator and a default organization, once per installation."""
    state, version = await load_state(deps.store, BOOTSTRAP, "admin")
    if state.user_id is not None:
        assert state.organization_id is not None
        return Reply(
            result=BootstrapResult(
                created=False, user_id=state.user_id, organization_id=state.organization_id
            )
        )
    claim, _ = await load_state(deps.store, EMAILS, email_key(cmd.email))
    user, _ = (
        (await load_state(deps.store, USERS, claim.user_id))
        if claim.user_id
        else (d.UserState(), 0)
    )
    if user.user_id is not None:
        user_id = user.user_id
    else:
        user_id, _ = await _register(
            deps, ctx, email=cmd.email, password=cmd.password, name=cmd.name, is_superuser=True
        )
    org_id, _ = await _create_org(deps, ctx, name="Default", slug=None, owner_id=user_id)
    events = d.decide_bootstrap(state, user_id=user_id, organization_id=org_id)
    seq = await deps.store.append(
        "bootstrap", "admin", events, expected_version=version, context=ctx.event_context(org_id)
    )
    return Reply(
        result=BootstrapResult(created=True, user_id=user_id, organization_id=org_id),
        position=position(seq),
    )
