"""Identity's business rules as pure functions: decide returns events, evolve folds them.

No I/O, no clock, no randomness: the handler passes in `now`, fresh ids and
already-computed hashes, so every rule here is a given/when/then unit test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

import msgspec

from libs.errors import (
    AuthenticationRequired,
    AuthorizationDenied,
    Conflict,
    NotFound,
    ValidationFailed,
)
from libs.events import Event
from libs.principal import ROLE_RANK, ROLE_SCOPES, Principal
from services.auth.events import (
    AdminBootstrapped,
    EmailClaimed,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    OrganizationCreated,
    SessionRefreshed,
    SessionRevoked,
    SessionStarted,
    SigningKeyAdded,
    SigningKeyRetired,
    SlugClaimed,
    TokenIssued,
    TokenRevoked,
    UserDeactivated,
    UserPasswordChanged,
    UserRegistered,
)

S = TypeVar("S")


def fold(evolve: Callable[[S, Event], S], initial: S, events: Iterable[Event]) -> S:
    state = initial
    for event in events:
        state = evolve(state, event)
    return state


# --- user ---------------------------------------------------------------------------------


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str | None = None
    email: str = ""
    name: str = ""
    password_hash: str = ""
    is_superuser: bool = False
    active: bool = False


def evolve_user(state: UserState, event: Event) -> UserState:
    match event:
        case UserRegistered():
            return UserState(
                user_id=event.user_id,
                email=event.email,
                name=event.name,
                password_hash=event.password_hash,
                is_superuser=event.is_superuser,
                active=True,
            )
        case UserPasswordChanged():
            return msgspec.structs.replace(state, password_hash=event.password_hash)
        case UserDeactivated():
            return msgspec.structs.replace(state, active=False)
    return state


def decide_register_user(
    state: UserState,
    *,
    user_id: str,
    email: str,
    name: str,
    password_hash: str,
    is_superuser: bool = False,
) -> list[Event]:
    if state.user_id is not None:
        raise Conflict("user already exists", {"field": "$.email"})
    return [
        UserRegistered(
            user_id=user_id,
            email=normalize_email(email),
            name=name,
            password_hash=password_hash,
            is_superuser=is_superuser,
        )
    ]


def normalize_email(email: str) -> str:
    return email.strip().lower()


# --- user_email ---------------------------------------------------------------------------


class EmailState(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str | None = None


def evolve_email(state: EmailState, event: Event) -> EmailState:
    if isinstance(event, EmailClaimed):
        return EmailState(user_id=event.user_id)
    return state


def decide_claim_email(state: EmailState, *, email: str, user_id: str) -> list[Event]:
    if state.user_id is not None:
        raise Conflict("a user with this email already exists", {"field": "$.email"})
    return [EmailClaimed(email=normalize_email(email), user_id=user_id)]


# --- organization -------------------------------------------------------------------------


class OrganizationState(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: str | None = None
    name: str = ""
    slug: str = ""
    members: dict[str, str] = msgspec.field(default_factory=dict)


def evolve_organization(state: OrganizationState, event: Event) -> OrganizationState:
    match event:
        case OrganizationCreated():
            return OrganizationState(
                organization_id=event.organization_id, name=event.name, slug=event.slug
            )
        case MemberAdded() | MemberRoleChanged():
            return msgspec.structs.replace(
                state, members={**state.members, event.user_id: event.role}
            )
        case MemberRemoved():
            members = dict(state.members)
            members.pop(event.user_id, None)
            return msgspec.structs.replace(state, members=members)
    return state


def decide_create_organization(
    state: OrganizationState, *, organization_id: str, name: str, slug: str, owner_id: str
) -> list[Event]:
    if state.organization_id is not None:
        raise Conflict("organization already exists")
    return [
        OrganizationCreated(
            organization_id=organization_id, name=name, slug=slug, created_by=owner_id
        ),
        MemberAdded(user_id=owner_id, role="owner"),
    ]


def _require_manager(state: OrganizationState, actor: Principal) -> str:
    """The actor's role, if it may manage members; 404 to outsiders, 403 to viewers."""
    if state.organization_id is None:
        raise NotFound("organization not found")
    role = "owner" if actor.is_superuser else state.members.get(actor.user_id)
    if role is None:
        raise NotFound("organization not found")
    # The credential must carry the admin scope too, a superuser's included.
    if "admin" not in actor.scopes or ROLE_RANK[role] < ROLE_RANK["admin"]:
        raise AuthorizationDenied("managing members needs the admin or owner role")
    return role


def _owners(state: OrganizationState) -> int:
    return sum(1 for role in state.members.values() if role == "owner")


def decide_add_member(
    state: OrganizationState, actor: Principal, *, user_id: str, role: str
) -> list[Event]:
    actor_role = _require_manager(state, actor)
    if role == "owner" and actor_role != "owner":
        raise AuthorizationDenied("only an owner can add an owner", {"field": "$.role"})
    if user_id in state.members:
        raise Conflict("user is already a member", {"field": "$.user_id"})
    return [MemberAdded(user_id=user_id, role=role)]


def decide_change_role(
    state: OrganizationState, actor: Principal, *, user_id: str, role: str
) -> list[Event]:
    actor_role = _require_manager(state, actor)
    current = state.members.get(user_id)
    if current is None:
        raise NotFound("member not found")
    if "owner" in (role, current) and actor_role != "owner":
        raise AuthorizationDenied("only an owner can grant or take away ownership")
    if current == "owner" and role != "owner" and _owners(state) == 1:
        raise Conflict("an organization keeps at least one owner", {"field": "$.role"})
    if current == role:
        return []
    return [MemberRoleChanged(user_id=user_id, role=role)]


def decide_remove_member(
    state: OrganizationState, actor: Principal, *, user_id: str
) -> list[Event]:
    actor_role = _require_manager(state, actor)
    current = state.members.get(user_id)
    if current is None:
        raise NotFound("member not found")
    if current == "owner" and actor_role != "owner":
        raise AuthorizationDenied("only an owner can remove an owner")
    if current == "owner" and _owners(state) == 1:
        raise Conflict("an organization keeps at least one owner")
    return [MemberRemoved(user_id=user_id)]


class SlugState(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: str | None = None


def evolve_slug(state: SlugState, event: Event) -> SlugState:
    if isinstance(event, SlugClaimed):
        return SlugState(organization_id=event.organization_id)
    return state


def decide_claim_slug(state: SlugState, *, organization_id: str) -> list[Event]:
    if state.organization_id is not None:
        raise Conflict("an organization with this slug already exists", {"field": "$.slug"})
    return [SlugClaimed(organization_id=organization_id)]


# --- session ------------------------------------------------------------------------------


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str | None = None
    user_id: str = ""
    organization_id: str | None = None
    refresh_hash: str = ""
    used_hashes: frozenset[str] = frozenset()
    generation: int = 0
    expires_at: datetime | None = None
    revoked: str | None = None


def evolve_session(state: SessionState, event: Event) -> SessionState:
    match event:
        case SessionStarted():
            return SessionState(
                session_id=event.session_id,
                user_id=event.user_id,
                organization_id=event.organization_id,
                refresh_hash=event.refresh_hash,
                expires_at=event.expires_at,
            )
        case SessionRefreshed():
            return msgspec.structs.replace(
                state,
                refresh_hash=event.refresh_hash,
                used_hashes=state.used_hashes | {state.refresh_hash},
                generation=event.generation,
                expires_at=event.expires_at,
            )
        case SessionRevoked():
            return msgspec.structs.replace(state, revoked=event.reason)
    return state


def decide_start_session(
    state: SessionState,
    *,
    session_id: str,
    user_id: str,
    organization_id: str | None,
    refresh_hash: str,
    now: datetime,
    ttl: timedelta,
) -> list[Event]:
    if state.session_id is not None:
        raise Conflict("session already exists")
    return [
        SessionStarted(
            session_id=session_id,
            user_id=user_id,
            organization_id=organization_id,
            refresh_hash=refresh_hash,
            expires_at=now + ttl,
        )
    ]


REUSE = "refresh_token_reused"


def decide_refresh(
    state: SessionState, *, presented_hash: str, new_hash: str, now: datetime, ttl: timedelta
) -> list[Event]:
    """Rotate the refresh token; a token used twice revokes its whole family.

    Returns `[SessionRevoked(reason=REUSE)]` on reuse: the handler appends it
    and then refuses the request.
    """
    invalid = AuthenticationRequired(
        "refresh token is invalid or expired", {"field": "$.refresh_token"}
    )
    if state.session_id is None or state.revoked is not None:
        raise invalid
    if presented_hash in state.used_hashes:
        return [SessionRevoked(reason=REUSE)]
    if presented_hash != state.refresh_hash:
        raise invalid
    if state.expires_at is not None and now >= state.expires_at:
        raise invalid
    return [
        SessionRefreshed(
            refresh_hash=new_hash, generation=state.generation + 1, expires_at=now + ttl
        )
    ]


def decide_end_session(state: SessionState, actor: Principal | None, *, reason: str) -> list[Event]:
    if state.session_id is None:
        raise NotFound("session not found")
    if actor is not None and not actor.is_superuser and actor.user_id != state.user_id:
        raise NotFound("session not found")
    if state.revoked is not None:
        return []
    return [SessionRevoked(reason=reason)]


# --- token --------------------------------------------------------------------------------

SERVICE_TOKEN_MAX_DAYS = 180


class TokenState(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str | None = None
    user_id: str = ""
    organization_id: str | None = None
    revoked: bool = False


def evolve_token(state: TokenState, event: Event) -> TokenState:
    match event:
        case TokenIssued():
            return TokenState(
                token_id=event.token_id,
                user_id=event.user_id,
                organization_id=event.organization_id,
            )
        case TokenRevoked():
            return msgspec.structs.replace(state, revoked=True)
    return state


def decide_issue_token(
    state: TokenState,
    actor: Principal,
    *,
    token_id: str,
    kind: str,
    name: str,
    scopes: tuple[str, ...],
    organization_id: str | None,
    expires_in_days: int | None,
    secret_hash: str,
    prefix: str,
    now: datetime,
    service_id: str | None = None,
    deployment_id: str | None = None,
) -> list[Event]:
    if state.token_id is not None:
        raise Conflict("token already exists")
    if actor.kind in ("service", "deployment"):
        # A narrow token must not mint a broader one that outlives its purpose.
        raise AuthorizationDenied("service and deployment tokens cannot issue tokens")
    org = organization_id or actor.organization_id
    if org is None:
        raise ValidationFailed("an organization is needed for a token", "$.organization_id")
    if not actor.is_superuser and actor.role_in(org) is None:
        raise NotFound("organization not found", {"field": "$.organization_id"})
    allowed = ROLE_SCOPES["owner"] if actor.is_superuser else ROLE_SCOPES[actor.memberships[org]]
    excess = sorted(set(scopes) - (allowed & set(actor.scopes)))
    if excess:
        raise AuthorizationDenied(
            f"you cannot grant scopes you do not hold: {', '.join(excess)}", {"field": "$.scopes"}
        )
    if kind == "service":
        if service_id is None:
            raise ValidationFailed("a service token names its service", "$.service_id")
        if expires_in_days is None or not 1 <= expires_in_days <= SERVICE_TOKEN_MAX_DAYS:
            raise ValidationFailed(
                f"a service token lives 1 to {SERVICE_TOKEN_MAX_DAYS} days", "$.expires_in_days"
            )
    if kind == "deployment" and deployment_id is None:
        raise ValidationFailed("a deployment token names its deployment", "$.deployment_id")
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    return [
        TokenIssued(
            token_id=token_id,
            kind=kind,
            name=name,
            user_id=actor.user_id,
            organization_id=org,
            scopes=tuple(sorted(set(scopes))),
            secret_hash=secret_hash,
            prefix=prefix,
            expires_at=expires_at,
            service_id=service_id,
            deployment_id=deployment_id,
        )
    ]


def decide_revoke_token(state: TokenState, actor: Principal) -> list[Event]:
    if state.token_id is None:
        raise NotFound("token not found")
    org = state.organization_id
    is_admin = (
        "admin" in actor.scopes
        and org is not None
        and ROLE_RANK.get(actor.role_in(org) or "", -1) >= ROLE_RANK["admin"]
    )
    superuser = actor.is_superuser and "admin" in actor.scopes
    if not (superuser or actor.user_id == state.user_id or is_admin):
        raise NotFound("token not found")
    if state.revoked:
        return []
    return [TokenRevoked(reason="revoked")]


# --- keyring ------------------------------------------------------------------------------


class SigningKey(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    public_key: str
    private_key_sealed: str
    added_at: datetime
    retired: bool = False


class KeyringState(msgspec.Struct, frozen=True, kw_only=True):
    keys: tuple[SigningKey, ...] = ()

    @property
    def active(self) -> SigningKey | None:
        live = [k for k in self.keys if not k.retired]
        return live[-1] if live else None


def evolve_keyring(state: KeyringState, event: Event) -> KeyringState:
    match event:
        case SigningKeyAdded():
            key = SigningKey(
                kid=event.kid,
                public_key=event.public_key,
                private_key_sealed=event.private_key_sealed,
                added_at=event.added_at,
            )
            return KeyringState(keys=(*state.keys, key))
        case SigningKeyRetired():
            return KeyringState(
                keys=tuple(
                    msgspec.structs.replace(k, retired=True) if k.kid == event.kid else k
                    for k in state.keys
                )
            )
    return state


def decide_rotate(
    state: KeyringState,
    *,
    now: datetime,
    max_age: timedelta,
    grace: timedelta,
    new_key: SigningKeyAdded,
) -> list[Event]:
    """Add a key when there is none or the active one is older than `max_age`.

    Superseded keys stay published for `grace` (the access-token lifetime)
    after their successor appeared, so tokens they signed keep verifying,
    and are retired after that.
    """
    active = state.active
    if active is None or now - active.added_at >= max_age:
        return [new_key]
    if now - active.added_at < grace:
        return []
    return [SigningKeyRetired(kid=k.kid) for k in state.keys if not k.retired and k is not active]


# --- bootstrap ----------------------------------------------------------------------------


class BootstrapState(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str | None = None
    organization_id: str | None = None


def evolve_bootstrap(state: BootstrapState, event: Event) -> BootstrapState:
    if isinstance(event, AdminBootstrapped):
        return BootstrapState(user_id=event.user_id, organization_id=event.organization_id)
    return state


def decide_bootstrap(state: BootstrapState, *, user_id: str, organization_id: str) -> list[Event]:
    if state.user_id is not None:
        return []
    return [AdminBootstrapped(user_id=user_id, organization_id=organization_id)]
