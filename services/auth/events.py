"""The events of the identity context, one tagged union per aggregate.

Tags are stable strings chosen once. Secrets never appear in clear: passwords
as argon2 hashes, tokens as SHA-256 of their secret, private keys sealed.
"""

from __future__ import annotations

from datetime import datetime

from libs.events import Event, EventCodec
from libs.eventstore import StreamSpec

STREAM = StreamSpec(
    context="auth",
    aggregates=(
        "user",
        "user_email",
        "organization",
        "org_slug",
        "session",
        "token",
        "keyring",
        "bootstrap",
    ),
    bookkeeping=frozenset({"user_email", "org_slug", "keyring"}),
)


# user.<id>
class UserRegistered(Event, frozen=True, kw_only=True, tag="user.registered"):
    user_id: str
    email: str
    name: str
    password_hash: str
    is_superuser: bool = False


class UserPasswordChanged(Event, frozen=True, kw_only=True, tag="user.password_changed"):
    password_hash: str


class UserDeactivated(Event, frozen=True, kw_only=True, tag="user.deactivated"):
    reason: str = ""


UserEvent = UserRegistered | UserPasswordChanged | UserDeactivated


# user_email.<hash of address>: makes an address unique across concurrent registrations.
class EmailClaimed(Event, frozen=True, kw_only=True, tag="user_email.claimed"):
    email: str
    user_id: str


# organization.<id>
class OrganizationCreated(Event, frozen=True, kw_only=True, tag="organization.created"):
    organization_id: str
    name: str
    slug: str
    created_by: str


class MemberAdded(Event, frozen=True, kw_only=True, tag="organization.member_added"):
    user_id: str
    role: str


class MemberRoleChanged(Event, frozen=True, kw_only=True, tag="organization.member_role_changed"):
    user_id: str
    role: str


class MemberRemoved(Event, frozen=True, kw_only=True, tag="organization.member_removed"):
    user_id: str


OrganizationEvent = OrganizationCreated | MemberAdded | MemberRoleChanged | MemberRemoved


# org_slug.<slug>
class SlugClaimed(Event, frozen=True, kw_only=True, tag="org_slug.claimed"):
    organization_id: str


# session.<id>: one login and every refresh token rotated from it (a family).
class SessionStarted(Event, frozen=True, kw_only=True, tag="session.started"):
    session_id: str
    user_id: str
    organization_id: str | None
    refresh_hash: str
    expires_at: datetime


class SessionRefreshed(Event, frozen=True, kw_only=True, tag="session.refreshed"):
    refresh_hash: str
    generation: int
    expires_at: datetime


class SessionRevoked(Event, frozen=True, kw_only=True, tag="session.revoked"):
    reason: str


SessionEvent = SessionStarted | SessionRefreshed | SessionRevoked


# token.<id>: personal API tokens, and the service/deployment tokens of fastDeploy.
class TokenIssued(Event, frozen=True, kw_only=True, tag="token.issued"):
    token_id: str
    kind: str
    name: str
    user_id: str
    organization_id: str | None
    scopes: tuple[str, ...]
    secret_hash: str
    prefix: str
    expires_at: datetime | None
    service_id: str | None = None
    deployment_id: str | None = None


class TokenRevoked(Event, frozen=True, kw_only=True, tag="token.revoked"):
    reason: str = "revoked"


TokenEvent = TokenIssued | TokenRevoked


# keyring.jwt: the Ed25519 keys that sign access tokens.
class SigningKeyAdded(Event, frozen=True, kw_only=True, tag="keyring.key_added"):
    kid: str
    public_key: str
    private_key_sealed: str
    added_at: datetime


class SigningKeyRetired(Event, frozen=True, kw_only=True, tag="keyring.key_retired"):
    kid: str


KeyringEvent = SigningKeyAdded | SigningKeyRetired


# bootstrap.admin: the first administrator is created once per installation.
class AdminBootstrapped(Event, frozen=True, kw_only=True, tag="bootstrap.admin_created"):
    user_id: str
    organization_id: str


CODECS: dict[str, EventCodec[Event]] = {
    "user": EventCodec(UserEvent),
    "user_email": EventCodec(EmailClaimed),
    "organization": EventCodec(OrganizationEvent),
    "org_slug": EventCodec(SlugClaimed),
    "session": EventCodec(SessionEvent),
    "token": EventCodec(TokenEvent),
    "keyring": EventCodec(KeyringEvent),
    "bootstrap": EventCodec(AdminBootstrapped),
}
