"""Sessions: log in, refresh (rotating the refresh token), log out; and the signing keys."""

from __future__ import annotations

from datetime import timedelta

from libs.aggregate import change, change_state, load_state
from libs.credentials import new_refresh_token, parse_refresh_token
from libs.crypto import token_hash
from libs.errors import AuthenticationRequired, NotFound, ValidationFailed
from libs.events import EventContext
from libs.ids import new_id
from libs.messaging import CommandContext, Reply
from services.auth import decider as d
from services.auth.commands import EnsureSigningKey, Login, Logout, Refresh, TokenPair
from services.auth.handlers.aggregates import (
    EMAILS,
    KEYRING,
    KEYRING_ID,
    ORGS,
    SESSIONS,
    USERS,
    AuthDeps,
    email_key,
    position,
)
from services.auth.signing import generate_key


def _session_context(ctx: CommandContext, state: d.SessionState) -> EventContext:
    """A session's events are its user's doing (a refresh or a logout presents only
    the refresh token), in the session's organization."""
    return EventContext(
        actor=ctx.principal.user_id if ctx.principal else state.user_id,
        credential=ctx.principal.token_id if ctx.principal else None,
        organization_id=state.organization_id,
        correlation_id=ctx.request_id,
        traceparent=ctx.traceparent,
    )


async def _issue_pair(
    deps: AuthDeps, ctx: CommandContext, *, user_id: str, organization_id: str | None
) -> tuple[TokenPair, int]:
    keyring = await deps.keyring()
    key = keyring.active
    if key is None:
        await ensure_signing_key(deps, EnsureSigningKey(), ctx)
        deps.forget_keyring()
        key = (await deps.keyring()).active
        assert key is not None
    session_id = new_id("ses")
    refresh = new_refresh_token(session_id)
    now = deps.clock()
    events = d.decide_start_session(
        d.SessionState(),
        session_id=session_id,
        user_id=user_id,
        organization_id=organization_id,
        refresh_hash=token_hash(refresh),
        now=now,
        ttl=deps.refresh_ttl,
    )
    ectx = EventContext(
        actor=user_id,
        organization_id=organization_id,
        correlation_id=ctx.request_id,
        traceparent=ctx.traceparent,
    )
    seq = await deps.store.append("session", session_id, events, expected_version=0, context=ectx)
    access = deps.signer.sign(
        key, user_id=user_id, session_id=session_id, organization_id=organization_id, now=now
    )
    pair = TokenPair(
        access_token=access, refresh_token=refresh, expires_in=int(deps.signer.ttl.total_seconds())
    )
    return pair, seq


async def login(deps: AuthDeps, cmd: Login, ctx: CommandContext) -> Reply:
    invalid = AuthenticationRequired("invalid email or password")
    claim, _ = await load_state(deps.store, EMAILS, email_key(cmd.email))
    if claim.user_id is None:
        await deps.verify_password(deps._dummy_hash, cmd.password)
        raise invalid
    user, _ = await load_state(deps.store, USERS, claim.user_id)
    if not user.active or not await deps.verify_password(user.password_hash, cmd.password):
        raise invalid
    organization_id = cmd.organization_id
    if organization_id is not None:
        org, _ = await load_state(deps.store, ORGS, organization_id)
        if claim.user_id not in org.members:
            raise NotFound("organization not found", {"field": "$.organization_id"})
    pair, seq = await _issue_pair(deps, ctx, user_id=claim.user_id, organization_id=organization_id)
    return Reply(result=pair, position=position(seq))


async def refresh(deps: AuthDeps, cmd: Refresh, ctx: CommandContext) -> Reply:
    parsed = parse_refresh_token(cmd.refresh_token)
    if parsed is None:
        raise AuthenticationRequired(
            "refresh token is invalid or expired", {"field": "$.refresh_token"}
        )
    session_id = parsed.entity_id
    presented = token_hash(cmd.refresh_token)
    new_refresh = new_refresh_token(session_id)
    now = deps.clock()
    state, seq = await change_state(
        deps.store,
        SESSIONS,
        session_id,
        lambda s: d.decide_refresh(
            s,
            presented_hash=presented,
            new_hash=token_hash(new_refresh),
            now=now,
            ttl=deps.refresh_ttl,
        ),
        lambda s: _session_context(ctx, s),
    )
    if state.revoked is not None:  # the token was used twice: the family is revoked
        raise AuthenticationRequired(
            "refresh token was already used: the session has been revoked",
            {"field": "$.refresh_token", "position": position(seq)},
        )
    key = (await deps.keyring()).active
    assert key is not None
    assert state.user_id is not None
    access = deps.signer.sign(
        key,
        user_id=state.user_id,
        session_id=session_id,
        organization_id=state.organization_id,
        now=now,
    )
    pair = TokenPair(
        access_token=access,
        refresh_token=new_refresh,
        expires_in=int(deps.signer.ttl.total_seconds()),
    )
    return Reply(result=pair, position=position(seq))


async def logout(deps: AuthDeps, cmd: Logout, ctx: CommandContext) -> Reply:
    session_id = cmd.session_id
    if cmd.refresh_token is not None:
        parsed = parse_refresh_token(cmd.refresh_token)
        if parsed is None:
            raise ValidationFailed("not a refresh token", "$.refresh_token")
        session_id = parsed.entity_id
    if session_id is None:
        raise ValidationFailed("name the session to end", "$.session_id")
    seq = await change(
        deps.store,
        SESSIONS,
        session_id,
        lambda s: d.decide_end_session(s, ctx.principal, reason="logout"),
        lambda s: _session_context(ctx, s),
    )
    return Reply(result=None, position=position(seq))


async def ensure_signing_key(deps: AuthDeps, cmd: EnsureSigningKey, ctx: CommandContext) -> Reply:
    """Add a signing key if none is active or it is due for rotation; retire old ones."""
    now = deps.clock()
    new_key = generate_key(deps.box, now)
    seq = await change(
        deps.store,
        KEYRING,
        KEYRING_ID,
        lambda s: d.decide_rotate(
            s,
            now=now,
            max_age=timedelta(days=cmd.max_age_days),
            grace=deps.signer.ttl,
            new_key=new_key,
        ),
        lambda _: ctx.event_context(),
    )
    if seq is not None:
        deps.forget_keyring()
    return Reply(result=None, position=position(seq))
