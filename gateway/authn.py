"""Who is calling: verifies credentials locally and learns revocations from events.

Access JWTs are checked against the public keys in the auth read model
(refreshed when an unknown `kid` appears). API tokens are found by the id
embedded in them and compared by SHA-256. Every replica follows the auth
stream's `session.*`, `token.*`, `organization.*` and `user.*` events with
ordered consumers, so a revocation or a membership change reaches all of
them as soon as it is stored, without waiting for the projection.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import msgspec
import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from gateway.user_directory import User, UserDirectory
from libs.credentials import parse_api_token
from libs.crypto import same_hash, token_hash
from libs.errors import AuthenticationRequired
from libs.events import H_EVENT_TYPE, split_subject
from libs.principal import Principal

log = structlog.get_logger("gateway.authn")

CACHE_SECONDS = 10.0
# Verified access tokens, so a client's every request does not pay for an
# Ed25519 check; revocation is still checked per request, by session id.
VERIFIED_CACHE_SIZE = 10_000


class _TokenRow(msgspec.Struct, frozen=True):
    token_id: str
    kind: str
    user_id: str
    organization_id: str | None
    scopes: tuple[str, ...]
    secret_hash: str
    expires_at: datetime | None
    revoked: bool
    service_id: str | None
    deployment_id: str | None


class _MemberEvent(msgspec.Struct):
    user_id: str | None = None


_member_decoder = msgspec.json.Decoder(_MemberEvent)


def bearer_credential(request: web.Request) -> str | None:
    """The credential in `Authorization: Bearer` or `X-API-Key`, if any."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationRequired(
                "use 'Authorization: Bearer <token>'", {"field": "Authorization"}
            )
        return value.strip()
    api_key = request.headers.get("X-API-Key")
    return api_key.strip() if api_key else None


# Seconds between looks for a signing key the read model does not have yet (~2 s in all).
KEY_WAITS = (0.0, 0.1, 0.3, 0.6, 1.0)


class Authenticator:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        users: UserDirectory,
        *,
        namespace: str,
        issuer: str,
        audience: str,
        access_ttl: float,
    ) -> None:
        self.pool = pool
        self.js = js
        self.users = users
        self.namespace = namespace
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_loaded_at = 0.0
        self._keys_lock = asyncio.Lock()
        self._revoked_sessions: dict[str, float] = {}
        self._revoked_tokens: set[str] = set()
        self._verified: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, tuple[_TokenRow | None, float]] = {}
        self._subs: list[Any] = []

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        # Subscribe before loading, so nothing revoked in between is missed.
        prefix = f"{self.namespace}." if self.namespace else ""
        for aggregate in ("session", "token", "organization", "user"):
            sub = await self.js.subscribe(
                f"{prefix}{aggregate}.*",
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
                cb=self._on_event,
            )
            self._subs.append(sub)
        try:
            await self._load_revocations()
        except asyncpg.UndefinedTableError:
            log.info("auth_read_model_not_ready")

    async def _load_revocations(self) -> None:
        await self._load_keys()
        cutoff = time.time() - self.access_ttl
        rows = await self.pool.fetch(
            "SELECT id, extract(epoch FROM revoked_at) AS at FROM auth.sessions "
            "WHERE revoked_at IS NOT NULL AND revoked_at > to_timestamp($1)",
            cutoff,
        )
        for row in rows:
            self._revoked_sessions[row["id"]] = float(row["at"]) + self.access_ttl

    async def stop(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # already closed with the connection
                log.debug("unsubscribe_failed", error=str(exc))
        self._subs.clear()

    async def _on_event(self, msg: Msg) -> None:
        headers = msg.headers or {}
        event_type = headers.get(H_EVENT_TYPE, "")
        aggregate, aggregate_id = split_subject(msg.subject, self.namespace)
        if event_type == "session.revoked":
            self._revoked_sessions[aggregate_id] = time.time() + self.access_ttl
        elif event_type == "token.revoked":
            self._revoked_tokens.add(aggregate_id)
            self._tokens.pop(aggregate_id, None)
        elif aggregate == "organization":
            user_id = _member_decoder.decode(msg.data).user_id
            if user_id:
                self.users.changed(user_id, msg.metadata.sequence.stream)
        elif aggregate == "user":
            self.users.changed(aggregate_id, msg.metadata.sequence.stream)
        self._prune()

    def _prune(self) -> None:
        if len(self._revoked_sessions) > 1000:
            now = time.time()
            self._revoked_sessions = {k: v for k, v in self._revoked_sessions.items() if v > now}

    # --- credentials ---------------------------------------------------------------------

    async def authenticate(self, credential: str) -> Principal:
        parsed = parse_api_token(credential)
        if parsed is not None:
            return await self._api_token(credential, parsed.entity_id)
        if credential.count(".") == 2:
            return await self._jwt(credential)
        raise AuthenticationRequired("the credential is not a DeployForge token")

    async def _jwt(self, token: str) -> Principal:
        claims = self._verified.get(token)
        if claims is None or claims["exp"] <= time.time():
            claims = await self._verify_jwt(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        session_id = str(claims["sid"])
        if session_id in self._revoked_sessions:
            raise AuthenticationRequired("the session was revoked")
        user_id = str(claims["sub"])
        info = await self._user(user_id)
        org = claims.get("org") or info.default_organization_id
        return Principal(
            user_id=user_id,
            kind="user",
            organization_id=org,
            memberships=info.roles,
            is_superuser=info.is_superuser,
            session_id=session_id,
        )

    async def _verify_jwt(self, token: str) -> dict[str, Any]:
        """Signature, issuer, audience and expiry; the claims if all hold."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise AuthenticationRequired("malformed access token") from None
        key = await self._key(kid) if isinstance(kid, str) else None
        if key is None:
            raise AuthenticationRequired("access token signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["EdDSA"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationRequired("access token expired") from None
        except jwt.InvalidTokenError:
            raise AuthenticationRequired("invalid access token") from None
        return claims

    async def _api_token(self, token: str, token_id: str) -> Principal:
        row = await self._token(token_id)
        invalid = AuthenticationRequired("invalid API token")
        if row is None or not same_hash(row.secret_hash, token_hash(token)):
            raise invalid
        if row.revoked or token_id in self._revoked_tokens:
            raise AuthenticationRequired("the API token was revoked")
        if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
            raise AuthenticationRequired("the API token expired")
        info = await self._user(row.user_id)
        # A token acts in its own organization only, whatever else its owner joined;
        # if the owner has left that organization, the token reaches nothing.
        org = row.organization_id
        roles = info.roles
        memberships = {org: roles[org]} if org in roles else {}
        return Principal(
            user_id=row.user_id,
            kind=row.kind,  # type: ignore[arg-type]
            organization_id=org,
            memberships=memberships,
            scopes=row.scopes,
            # Superuser power needs a login session; tokens stay in their organization.
            is_superuser=False,
            token_id=token_id,
            service_id=row.service_id,
            deployment_id=row.deployment_id,
        )

    # --- read-model lookups, cached briefly and invalidated by events --------------------

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        # A key added moments ago may not be in the read model yet (a first start
        # under load: a login's token used at once): look again for a while. One
        # load at a time, at most one per 50 ms, however many callers wait.
        for delay in KEY_WAITS:
            await asyncio.sleep(delay)
            async with self._keys_lock:
                if kid not in self._keys and time.monotonic() - self._keys_loaded_at > 0.05:
                    await self._load_keys()
            key = self._keys.get(kid)
            if key is not None:
                return key
        return None

    async def _load_keys(self) -> None:
        rows = await self.pool.fetch(
            "SELECT kid, public_jwk FROM auth.signing_keys WHERE retired_at IS NULL"
        )
        self._keys = {row["kid"]: jwt.PyJWK(row["public_jwk"]) for row in rows}
        self._keys_loaded_at = time.monotonic()

    async def jwks(self) -> dict[str, Any]:
        rows = await self.pool.fetch(
            "SELECT public_jwk FROM auth.signing_keys WHERE retired_at IS NULL ORDER BY added_at"
        )
        return {"keys": [row["public_jwk"] for row in rows]}

    async def _user(self, user_id: str) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise AuthenticationRequired("unknown user")
        if not user.active:
            raise AuthenticationRequired("the user is deactivated")
        return user

    async def _token(self, token_id: str) -> _TokenRow | None:
        cached = self._tokens.get(token_id)
        if cached is not None and time.monotonic() - cached[1] < CACHE_SECONDS:
            return cached[0]
        row = await self.pool.fetchrow(
            "SELECT id, kind, user_id, organization_id, scopes, secret_hash, expires_at, "
            "revoked_at IS NOT NULL AS revoked, service_id, deployment_id "
            "FROM auth.tokens WHERE id = $1",
            token_id,
        )
        token = (
            None
            if row is None
            else _TokenRow(
                row["id"],
                row["kind"],
                row["user_id"],
                row["organization_id"],
                tuple(row["scopes"]),
                row["secret_hash"],
                row["expires_at"],
                row["revoked"],
                row["service_id"],
                row["deployment_id"],
            )
        )
        # A miss is not cached: a token just issued must work as soon as it is projected.
        if token is not None:
            self._tokens[token_id] = (token, time.monotonic())
        return token
