"""Users and organizations: registering, creating, and changing who is a member."""

from __future__ import annotations

from collections.abc import Callable

from libs.aggregate import change, load_state
from libs.errors import AuthorizationDenied, NotFound, ValidationFailed
from libs.events import Event
from libs.ids import new_id, random_secret
from libs.messaging import CommandContext, Reply
from libs.slugs import slugify
from services.auth import decider as d
from services.auth.commands import (
    AddMember,
    ChangeMemberRole,
    Created,
    CreateOrganization,
    CreateUser,
    RemoveMember,
)
from services.auth.handlers.aggregates import (
    EMAILS,
    ORGS,
    SLUGS,
    USERS,
    AuthDeps,
    email_key,
    position,
)


async def _register(
    deps: AuthDeps,
    ctx: CommandContext,
    *,
    email: str,
    password: str,
    name: str,
    is_superuser: bool = False,
) -> tuple[str, int]:
    """Claim the address, then record the user; resumes a registration cut off between."""
    key = email_key(email)
    claim, claim_version = await load_state(deps.store, EMAILS, key)
    if claim.user_id is not None:
        existing, _ = await load_state(deps.store, USERS, claim.user_id)
        if existing.user_id is not None:
            d.decide_claim_email(claim, email=email, user_id=claim.user_id)  # raises 409
        user_id = claim.user_id
    else:
        user_id = new_id("usr")
        events = d.decide_claim_email(claim, email=email, user_id=user_id)
        await deps.store.append(
            "user_email", key, events, expected_version=claim_version, context=ctx.event_context()
        )
    password_hash = await deps.hash_password(password)
    state, version = await load_state(deps.store, USERS, user_id)
    events = d.decide_register_user(
        state,
        user_id=user_id,
        email=email,
        name=name,
        password_hash=password_hash,
        is_superuser=is_superuser,
    )
    seq = await deps.store.append(
        "user", user_id, events, expected_version=version, context=ctx.event_context()
    )
    return user_id, seq


async def create_user(deps: AuthDeps, cmd: CreateUser, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    org_id = cmd.organization_id or actor.organization_id
    if org_id is None and not actor.is_superuser:
        raise ValidationFailed("name the organization the user joins", "$.organization_id")
    if org_id is not None:
        org, _ = await load_state(deps.store, ORGS, org_id)
        # Check before registering, so a refused request leaves nothing behind.
        d.decide_add_member(org, actor, user_id="\0new", role=cmd.role)
    user_id, seq = await _register(deps, ctx, email=cmd.email, password=cmd.password, name=cmd.name)
    if org_id is not None:
        joined = await _change_org(
            deps,
            ctx,
            org_id,
            lambda state: d.decide_add_member(state, actor, user_id=user_id, role=cmd.role),
        )
        seq = joined or seq
    return Reply(result=Created(id=user_id), position=position(seq))


async def _change_org(
    deps: AuthDeps,
    ctx: CommandContext,
    org_id: str,
    decide: Callable[[d.OrganizationState], list[Event]],
) -> int | None:
    return await change(deps.store, ORGS, org_id, decide, lambda _: ctx.event_context(org_id))


async def _create_org(
    deps: AuthDeps, ctx: CommandContext, *, name: str, slug: str | None, owner_id: str
) -> tuple[str, int]:
    organization_id = new_id("org")
    chosen = slug or slugify(name, "org")
    claim, version = await load_state(deps.store, SLUGS, chosen)
    if claim.organization_id is not None and slug is None:
        # The name's slug is taken and none was asked for: make this one unique.
        chosen = f"{chosen[:50]}-{random_secret(6).lower()}"
        claim, version = await load_state(deps.store, SLUGS, chosen)
    events = d.decide_claim_slug(claim, organization_id=organization_id)
    await deps.store.append(
        "org_slug",
        chosen,
        events,
        expected_version=version,
        context=ctx.event_context(organization_id),
    )
    events = d.decide_create_organization(
        d.OrganizationState(),
        organization_id=organization_id,
        name=name,
        slug=chosen,
        owner_id=owner_id,
    )
    seq = await deps.store.append(
        "organization",
        organization_id,
        events,
        expected_version=0,
        context=ctx.event_context(organization_id),
    )
    return organization_id, seq


async def create_organization(
    deps: AuthDeps, cmd: CreateOrganization, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    if actor.kind != "user" and "admin" not in actor.scopes:
        raise AuthorizationDenied("creating an organization needs the admin scope")
    org_id, seq = await _create_org(deps, ctx, name=cmd.name, slug=cmd.slug, owner_id=actor.user_id)
    return Reply(result=Created(id=org_id), position=position(seq))


async def _require_user(deps: AuthDeps, user_id: str) -> None:
    user, _ = await load_state(deps.store, USERS, user_id)
    if user.user_id is None:
        raise NotFound("user not found", {"field": "$.user_id"})


async def add_member(deps: AuthDeps, cmd: AddMember, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    org, _ = await load_state(deps.store, ORGS, cmd.organization_id)
    d.decide_add_member(org, actor, user_id="\0check", role=cmd.role)
    await _require_user(deps, cmd.user_id)
    seq = await _change_org(
        deps,
        ctx,
        cmd.organization_id,
        lambda s: d.decide_add_member(s, actor, user_id=cmd.user_id, role=cmd.role),
    )
    return Reply(result=None, position=position(seq))


async def change_member_role(deps: AuthDeps, cmd: ChangeMemberRole, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await _change_org(
        deps,
        ctx,
        cmd.organization_id,
        lambda s: d.decide_change_role(s, actor, user_id=cmd.user_id, role=cmd.role),
    )
    return Reply(result=None, position=position(seq))


async def remove_member(deps: AuthDeps, cmd: RemoveMember, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await _change_org(
        deps,
        ctx,
        cmd.organization_id,
        lambda s: d.decide_remove_member(s, actor, user_id=cmd.user_id),
    )
    return Reply(result=None, position=position(seq))
