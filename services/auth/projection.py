"""Identity's read model: users, organizations, memberships, tokens, sessions, keys.

Every timestamp comes from the event's metadata, never from `now()`, so a
replay rebuilds identical rows.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from libs.events import Event, Recorded
from libs.projections import Projection
from services.auth.events import (
    CODECS,
    STREAM,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    OrganizationCreated,
    SessionRefreshed,
    SessionRevoked,
    SessionStarted,
    SigningKeyAdded,
    SigningKeyRetired,
    TokenIssued,
    TokenRevoked,
    UserDeactivated,
    UserPasswordChanged,
    UserRegistered,
)
from services.auth.signing import public_jwk

DDL = (Path(__file__).parent / "schema.sql").read_text()


class AuthProjection(Projection):
    name = "auth"
    schema = "auth"
    spec = STREAM
    ddl = DDL
    codecs = CODECS

    async def apply(self, conn: asyncpg.Connection, recorded: Recorded[Event]) -> None:
        event, meta = recorded.event, recorded.meta
        at, agg_id = meta.occurred_at, meta.aggregate_id
        match event:
            case UserRegistered():
                await conn.execute(
                    "INSERT INTO users (id, email, name, is_superuser, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (id) DO NOTHING",
                    event.user_id,
                    event.email,
                    event.name,
                    event.is_superuser,
                    at,
                )
            case UserPasswordChanged():
                await conn.execute("UPDATE users SET updated_at = $2 WHERE id = $1", agg_id, at)
            case UserDeactivated():
                await conn.execute(
                    "UPDATE users SET active = false, updated_at = $2 WHERE id = $1", agg_id, at
                )
            case OrganizationCreated():
                await conn.execute(
                    "INSERT INTO organizations (id, name, slug, created_by, created_at) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    event.organization_id,
                    event.name,
                    event.slug,
                    event.created_by,
                    at,
                )
            case MemberAdded():
                await conn.execute(
                    "INSERT INTO memberships (organization_id, user_id, role, joined_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    agg_id,
                    event.user_id,
                    event.role,
                    at,
                )
                await conn.execute(
                    "UPDATE users SET default_organization_id = $2, updated_at = $3 "
                    "WHERE id = $1 AND default_organization_id IS NULL",
                    event.user_id,
                    agg_id,
                    at,
                )
            case MemberRoleChanged():
                await conn.execute(
                    "UPDATE memberships SET role = $3 WHERE organization_id = $1 AND user_id = $2",
                    agg_id,
                    event.user_id,
                    event.role,
                )
            case MemberRemoved():
                await conn.execute(
                    "DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2",
                    agg_id,
                    event.user_id,
                )
                # The next-oldest membership becomes the default organization.
                await conn.execute(
                    "UPDATE users SET updated_at = $3, default_organization_id = ("
                    "  SELECT organization_id FROM memberships WHERE user_id = $1"
                    "  ORDER BY joined_at, organization_id LIMIT 1) "
                    "WHERE id = $1 AND default_organization_id = $2",
                    event.user_id,
                    agg_id,
                    at,
                )
            case SessionStarted():
                await conn.execute(
                    "INSERT INTO sessions (id, user_id, organization_id, created_at, expires_at) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    event.session_id,
                    event.user_id,
                    event.organization_id,
                    at,
                    event.expires_at,
                )
            case SessionRefreshed():
                await conn.execute(
                    "UPDATE sessions SET generation = $2, refreshed_at = $3, expires_at = $4 "
                    "WHERE id = $1",
                    agg_id,
                    event.generation,
                    at,
                    event.expires_at,
                )
            case SessionRevoked():
                await conn.execute(
                    "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 "
                    "WHERE id = $1 AND revoked_at IS NULL",
                    agg_id,
                    at,
                    event.reason,
                )
            case TokenIssued():
                await conn.execute(
                    "INSERT INTO tokens (id, kind, name, user_id, organization_id, scopes, prefix,"
                    " secret_hash, service_id, deployment_id, created_at, expires_at) "
                    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (id) DO NOTHING",
                    event.token_id,
                    event.kind,
                    event.name,
                    event.user_id,
                    event.organization_id,
                    list(event.scopes),
                    event.prefix,
                    event.secret_hash,
                    event.service_id,
                    event.deployment_id,
                    at,
                    event.expires_at,
                )
            case TokenRevoked():
                await conn.execute(
                    "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    agg_id,
                    at,
                )
            case SigningKeyAdded():
                await conn.execute(
                    "INSERT INTO signing_keys (kid, public_jwk, added_at) VALUES ($1, $2, $3) "
                    "ON CONFLICT (kid) DO NOTHING",
                    event.kid,
                    public_jwk(event.kid, event.public_key),
                    event.added_at,
                )
            case SigningKeyRetired():
                await conn.execute(
                    "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1", event.kid, at
                )
