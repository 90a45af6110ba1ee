"""Users and their memberships as the auth read model has them, cached per user.

Every request needs its caller's memberships, and `GET /v1/users/me` the whole
user: one cache serves both. An entry is forgotten as soon as an auth event
about its user arrives (the authenticator follows the auth stream), and a
fetch is kept only if the read model it came from had applied every such
event: it remembers the auth projection's position when it was read, so a
read that brings a consistency token for a later position fetches again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
import msgspec

# A safety net for an event the ordered consumer missed (a reconnect): no entry
# is older than this.
TTL_SECONDS = 10.0
CAPACITY = 50_000


class Membership(msgspec.Struct, frozen=True, kw_only=True):
    organization_id: str
    name: str
    slug: str
    role: str
    joined_at: datetime


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    name: str
    is_superuser: bool
    active: bool
    default_organization_id: str | None
    created_at: datetime
    organizations: list[Membership] = []

    @property
    def roles(self) -> dict[str, str]:
        """Organization id -> role."""
        return {m.organization_id: m.role for m in self.organizations}


USER_COLUMNS = "id, email, name, is_superuser, active, default_organization_id, created_at"
_MEMBERSHIPS = msgspec.json.Decoder(list[Membership])


async def fetch_user(pool: asyncpg.Pool, user_id: str) -> User | None:
    """A user and their memberships, in one round trip."""
    row = await pool.fetchrow(
        # The f-string interpolates only the constant column list above.
        f"SELECT {USER_COLUMNS}, (SELECT coalesce(json_agg(json_build_object("  # noqa: S608
        "  'organization_id', m.organization_id, 'name', o.name, 'slug', o.slug,"
        "  'role', m.role, 'joined_at', m.joined_at) ORDER BY m.joined_at, m.organization_id),"
        "  '[]')::text FROM auth.memberships m JOIN auth.organizations o"
        "  ON o.id = m.organization_id WHERE m.user_id = u.id) AS organizations "
        "FROM auth.users u WHERE id = $1",
        user_id,
    )
    if row is None:
        return None
    fields = dict(row)
    organizations = _MEMBERSHIPS.decode(fields.pop("organizations"))
    return User(**fields, organizations=organizations)


class UserDirectory:
    def __init__(self, pool: asyncpg.Pool, position: Callable[[], int]) -> None:
        """`position`: how far the auth read model is known to have applied the stream."""
        self.pool = pool
        self.position = position
        self._entries: dict[str, tuple[User, int, float]] = {}
        # user id -> the stream sequence of the last event about them
        self._changed_at: dict[str, int] = {}

    async def get(self, user_id: str, *, at_least: int = 0) -> User | None:
        """The user, from a read of the read model at `at_least` or later."""
        entry = self._entries.get(user_id)
        if entry is not None and entry[1] >= at_least and time.monotonic() - entry[2] < TTL_SECONDS:
            return entry[0]
        read_at = self.position()  # before the query: the query sees at least this
        user = await fetch_user(self.pool, user_id)
        if user is None:
            return None  # a miss is not kept: a user just created is found once projected
        changed = self._changed_at.get(user_id, 0)
        if read_at >= changed:
            self._changed_at.pop(user_id, None)
            if len(self._entries) >= CAPACITY:
                self._entries.clear()
            self._entries[user_id] = (user, read_at, time.monotonic())
        return user

    def changed(self, user_id: str, seq: int) -> None:
        """An event about the user was stored at stream sequence `seq`."""
        self._entries.pop(user_id, None)
        self._changed_at[user_id] = max(seq, self._changed_at.get(user_id, 0))
        if len(self._changed_at) > CAPACITY:
            now = self.position()
            self._changed_at = {u: s for u, s in self._changed_at.items() if s > now}
