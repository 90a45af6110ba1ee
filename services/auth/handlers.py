"""One function per identity command: load the aggregates, decide, append.

Every function takes `AuthDeps` (built by main.py) and returns a `Reply`
whose position is the last event appended, for read-your-writes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

import argon2
import msgspec

from libs.aggregate import AggregateType, load_state, retry_on_conflict
from libs.credentials import new_refresh_token, new_token, parse_refresh_token
from libs.crypto import SecretBox, token_hash
from libs.errors import AuthenticationRequired, AuthorizationDenied, NotFound, ValidationFailed
from libs.events import Event, EventContext
from libs.eventstore import EventStore
from libs.ids import new_id, random_secret
from libs.messaging import CommandContext, Reply
from libs.principal import Principal
from libs.slugs import slugify
from services.auth import decider as d
from services.auth.commands import (
    AddMember,
    BootstrapAdmin,
    BootstrapResult,
    ChangeMemberRole,
    Created,
    CreateOrganization,
    CreateUser,
    EnsureSigningKey,
    IssueDeploymentToken,
    IssuedToken,
    IssueToken,
    Login,
    Logout,
    Refresh,
    RemoveMember,
    RevokeToken,
    TokenPair,
)
from services.auth.events import CODECS, STREAM, SessionRevoked, TokenIssued
from services.auth.signing import AccessTokenSigner, generate_key

USERS = AggregateType("user", CODECS["user"], d.UserState(), d.evolve_user)
EMAILS = AggregateType("user_email", CODECS["user_email"], d.EmailState(), d.evolve_email)
ORGS = AggregateType(
    "organization", CODECS["organization"], d.OrganizationState(), d.evolve_organization
)
SLUGS = AggregateType("org_slug", CODECS["org_slug"], d.SlugState(), d.evolve_slug)
SESSIONS = AggregateType("session", CODECS["session"], d.SessionState(), d.evolve_session)
TOKENS = AggregateType("token", CODECS["token"], d.TokenState(), d.evolve_token)
KEYRING = AggregateType("keyring", CODECS["keyring"], d.KeyringState(), d.evolve_keyring)
BOOTSTRAP = AggregateType("bootstrap", CODECS["bootstrap"], d.BootstrapState(), d.evolve_bootstrap)
KEYRING_ID = "jwt"


class AuthDeps:
    """The adapters identity's handlers need; main.py builds the real ones."""

    def __init__(
        self,
        store: EventStore,
        box: SecretBox,
        signer: AccessTokenSigner,
        *,
        refresh_ttl: timedelta,
        key_max_age: timedelta,
        clock: Callable[[], datetime],
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.signer = signer
        self.refresh_ttl = refresh_ttl
        self.key_max_age = key_max_age
        self.clock = clock
        self.hasher = hasher or argon2.PasswordHasher()
        # Verifying against this when an email is unknown keeps timing alike.
        self._dummy_hash = self.hasher.hash(random_secret())
        self._keyring: tuple[d.KeyringState, float] | None = None

    async def hash_password(self, password: str) -> str:
        # argon2 is deliberately slow and releases the GIL: keep it off the event loop.
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify_password(self, password_hash: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self.hasher.verify, password_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False

    async def keyring(self) -> d.KeyringState:
        """The keyring, reloaded at most every few seconds (keys change rarely)."""
        now = asyncio.get_running_loop().time()
        if self._keyring is None or now - self._keyring[1] > 5.0:
            state, _ = await load_state(self.store, KEYRING, KEYRING_ID)
            self._keyring = (state, now)
        return self._keyring[0]

    def forget_keyring(self) -> None:
        self._keyring = None


def _position(seq: int) -> str:
    return f"{STREAM.context}:{seq}"


def email_key(email: str) -> str:
    return hashlib.sha256(d.normalize_email(email).encode()).hexdigest()[:40]


# --- sessions -----------------------------------------------------------------------------


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
    return Reply(result=pair, position=_position(seq))


async def refresh(deps: AuthDeps, cmd: Refresh, ctx: CommandContext) -> Reply:
    parsed = parse_refresh_token(cmd.refresh_token)
    if parsed is None:
        raise AuthenticationRequired(
            "refresh token is invalid or expired", {"field": "$.refresh_token"}
        )
    session_id = parsed.entity_id
    presented = token_hash(cmd.refresh_token)

    async def attempt() -> Reply:
        state, version = await load_state(deps.store, SESSIONS, session_id)
        new_refresh = new_refresh_token(session_id)
        now = deps.clock()
        events = d.decide_refresh(
            state,
            presented_hash=presented,
            new_hash=token_hash(new_refresh),
            now=now,
            ttl=deps.refresh_ttl,
        )
        ectx = EventContext(
            actor=state.user_id,
            organization_id=state.organization_id,
            correlation_id=ctx.request_id,
            traceparent=ctx.traceparent,
        )
        seq = await deps.store.append(
            "session", session_id, events, expected_version=version, context=ectx
        )
        if isinstance(events[0], SessionRevoked):
            raise AuthenticationRequired(
                "refresh token was already used: the session has been revoked",
                {"field": "$.refresh_token", "position": _position(seq)},
            )
        key = (await deps.keyring()).active
        assert key is not None
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
        return Reply(result=pair, position=_position(seq))

    return await retry_on_conflict(attempt)


async def logout(deps: AuthDeps, cmd: Logout, ctx: CommandContext) -> Reply:
    session_id = cmd.session_id
    if cmd.refresh_token is not None:
        parsed = parse_refresh_token(cmd.refresh_token)
        if parsed is None:
            raise ValidationFailed("not a refresh token", "$.refresh_token")
        session_id = parsed.entity_id
    if session_id is None:
        raise ValidationFailed("name the session to end", "$.session_id")
    target = session_id

    async def attempt() -> Reply:
        state, version = await load_state(deps.store, SESSIONS, target)
        events = d.decide_end_session(state, ctx.principal, reason="logout")
        if not events:
            return Reply(result=None)
        seq = await deps.store.append(
            "session",
            target,
            events,
            expected_version=version,
            # Logging out with the refresh token alone: the session's user did it.
            context=msgspec.structs.replace(
                ctx.event_context(state.organization_id),
                actor=ctx.principal.user_id if ctx.principal else state.user_id,
            ),
        )
        return Reply(result=None, position=_position(seq))

    return await retry_on_conflict(attempt)


# --- users and organizations --------------------------------------------------------------


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
        seq = await _change_org(
            deps,
            ctx,
            org_id,
            lambda state: d.decide_add_member(state, actor, user_id=user_id, role=cmd.role),
        )
    return Reply(result=Created(id=user_id), position=_position(seq))


async def _change_org(
    deps: AuthDeps,
    ctx: CommandContext,
    org_id: str,
    decide: Callable[[d.OrganizationState], list[Event]],
) -> int:
    async def attempt() -> int:
        state, version = await load_state(deps.store, ORGS, org_id)
        events = decide(state)
        if not events:
            return version
        return await deps.store.append(
            "organization",
            org_id,
            events,
            expected_version=version,
            context=ctx.event_context(org_id),
        )

    return await retry_on_conflict(attempt)


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
    return Reply(result=Created(id=org_id), position=_position(seq))


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
    return Reply(result=None, position=_position(seq))


async def change_member_role(deps: AuthDeps, cmd: ChangeMemberRole, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await _change_org(
        deps,
        ctx,
        cmd.organization_id,
        lambda s: d.decide_change_role(s, actor, user_id=cmd.user_id, role=cmd.role),
    )
    return Reply(result=None, position=_position(seq))


async def remove_member(deps: AuthDeps, cmd: RemoveMember, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await _change_org(
        deps,
        ctx,
        cmd.organization_id,
        lambda s: d.decide_remove_member(s, actor, user_id=cmd.user_id),
    )
    return Reply(result=None, position=_position(seq))


# --- API tokens ---------------------------------------------------------------------------


async def issue_token(deps: AuthDeps, cmd: IssueToken, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    token_id, token, prefix = new_token(cmd.kind)
    now = deps.clock()
    events = d.decide_issue_token(
        d.TokenState(),
        actor,
        token_id=token_id,
        kind=cmd.kind,
        name=cmd.name,
        scopes=tuple(cmd.scopes),
        organization_id=cmd.organization_id,
        expires_in_days=cmd.expires_in_days,
        secret_hash=token_hash(token),
        prefix=prefix,
        now=now,
        service_id=cmd.service_id,
        deployment_id=cmd.deployment_id,
    )
    issued = events[0]
    assert isinstance(issued, TokenIssued)
    seq = await deps.store.append(
        "token",
        token_id,
        events,
        expected_version=0,
        context=ctx.event_context(issued.organization_id),
    )
    result = IssuedToken(
        id=token_id,
        name=cmd.name,
        token=token,
        kind=cmd.kind,
        prefix=prefix,
        scopes=list(issued.scopes),
        organization_id=issued.organization_id,
        expires_at=issued.expires_at.isoformat() if issued.expires_at else None,
        created_at=now.isoformat(),
    )
    return Reply(result=result, position=_position(seq))


async def issue_deployment_token(
    deps: AuthDeps, cmd: IssueDeploymentToken, ctx: CommandContext
) -> Reply:
    if ctx.principal is not None:
        # Only the deploy service asks, over NATS; never a caller of the HTTP API.
        raise AuthorizationDenied("deployment tokens are issued by the deploy service")
    # Starting the deployment needed the deploy permission; the token holds no more.
    starter = Principal(
        user_id=cmd.user_id,
        organization_id=cmd.organization_id,
        memberships={cmd.organization_id: "deployer"},
        scopes=("read", "deploy"),
    )
    return await issue_token(
        deps,
        IssueToken(
            name=f"deployment {cmd.deployment_id}",
            scopes=["read", "deploy"],
            kind="deployment",
            expires_in_days=cmd.expires_in_days,
            organization_id=cmd.organization_id,
            deployment_id=cmd.deployment_id,
        ),
        CommandContext(principal=starter, request_id=ctx.request_id, traceparent=ctx.traceparent),
    )


async def revoke_token(deps: AuthDeps, cmd: RevokeToken, ctx: CommandContext) -> Reply:
    actor = ctx.caller()

    async def attempt() -> Reply:
        state, version = await load_state(deps.store, TOKENS, cmd.token_id)
        events = d.decide_revoke_token(state, actor)
        if not events:
            return Reply(result=None)
        seq = await deps.store.append(
            "token",
            cmd.token_id,
            events,
            expected_version=version,
            # Logging out with the refresh token alone: the session's user did it.
            context=msgspec.structs.replace(
                ctx.event_context(state.organization_id),
                actor=ctx.principal.user_id if ctx.principal else state.user_id,
            ),
        )
        return Reply(result=None, position=_position(seq))

    return await retry_on_conflict(attempt)


# --- installation -------------------------------------------------------------------------


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
        position=_position(seq),
    )


async def ensure_signing_key(deps: AuthDeps, cmd: EnsureSigningKey, ctx: CommandContext) -> Reply:
    """Add a signing key if none is active or it is due for rotation; retire old ones."""

    async def attempt() -> Reply:
        state, version = await load_state(deps.store, KEYRING, KEYRING_ID)
        now = deps.clock()
        events = d.decide_rotate(
            state,
            now=now,
            max_age=timedelta(days=cmd.max_age_days),
            grace=deps.signer.ttl,
            new_key=generate_key(deps.box, now),
        )
        if not events:
            return Reply(result=None)
        seq = await deps.store.append(
            "keyring", KEYRING_ID, events, expected_version=version, context=ctx.event_context()
        )
        deps.forget_keyring()
        return Reply(result=None, position=_position(seq))

    return await retry_on_conflict(attempt)
