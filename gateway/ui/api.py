"""The public API as the signed-in user: the SDK, over the gateway's own socket.

The UI never reads a read model or sends a command itself: every page is made of
`/v1` answers, with the session's access token (refreshed before it expires, and
once more if the API says it has), and read-your-writes carried across pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from deployforge_client import AsyncDeployForge
from deployforge_client.errors import APIError, AuthenticationRequired

from gateway.ui.sessions import Session, SessionStore

# No retries: a page answers at once (a 429's Retry-After can be a minute; the user
# reloads), and loopback calls do not drop.
# Refresh this long before the access token would expire.
REFRESH_MARGIN = timedelta(seconds=30)


class SignedOut(Exception):
    """The session's refresh token no longer works: sign in again."""


class UserApi:
    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        store: SessionStore,
        session: Session,
        headers: dict[str, str],
    ) -> None:
        self.base_url, self.http, self.store, self.session = base_url, http, store, session
        self.headers = headers
        self._refreshing = asyncio.Lock()
        self._refreshed = False

    def _client(self) -> AsyncDeployForge:
        client = AsyncDeployForge(
            self.base_url, self.session.access_token, http=self.http, max_retries=0,
            headers=self.headers,
        )  # fmt: skip
        client.consistency_token = self.session.consistency
        return client

    async def _refresh(self) -> None:
        async with self._refreshing:  # a page's parallel reads refresh once
            if self.session.access_expires - REFRESH_MARGIN > datetime.now(UTC) and (
                self._refreshed
            ):
                return
            try:
                alive = await self.store.refresh(self.session, self._rotate)
            except APIError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise  # the API is unwell or busy: the session may still be good
                await self.store.delete(self.session)
                raise SignedOut(exc.message) from exc
            if not alive:
                raise SignedOut("the session ended")
            self._refreshed = True

    async def _rotate(self, refresh_token: str) -> tuple[str, str, int]:
        anonymous = AsyncDeployForge(
            self.base_url, "", http=self.http, max_retries=0, headers=self.headers
        )
        pair = await anonymous.post("/v1/auth/refresh", {"refresh_token": refresh_token})
        return pair["access_token"], pair["refresh_token"], int(pair["expires_in"])

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.session.access_expires - REFRESH_MARGIN <= datetime.now(UTC):
            await self._refresh()
        for attempt in (0, 1):
            client = self._client()
            try:
                result = await client.request(method, path, **kwargs)
            except AuthenticationRequired as exc:
                if attempt:
                    raise SignedOut(exc.message) from exc
                await self._refresh()
                continue
            if method != "GET":
                await self.store.remember_write(self.session, client.consistency_token)
            return result
        raise AssertionError("unreachable")

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> Any:
        return await self.request("POST", path, json=json)

    async def put(self, path: str, json: Any) -> Any:
        return await self.request("PUT", path, json=json)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def items(self, path: str, limit: int = 50, **params: Any) -> list[dict[str, Any]]:
        """The first page of a list (a page shows at most `limit`)."""
        page = await self.get(path, limit=limit, **params)
        items: list[dict[str, Any]] = page["items"]
        return items

    async def page(
        self, path: str, cursor: str | None, limit: int = 100, **params: Any
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list from `cursor` (None: the first), and the next page's cursor."""
        answer = await self.get(path, limit=limit, cursor=cursor, **params)
        return answer["items"], answer.get("next_cursor")

    async def events(
        self, path: str, *, last_event_id: str | None = None, **params: Any
    ) -> AsyncIterator[Any]:
        if self.session.access_expires - REFRESH_MARGIN <= datetime.now(UTC):
            await self._refresh()
        async for event in self._client().events(path, last_event_id=last_event_id, **params):
            yield event


async def sign_in(
    base_url: str,
    http: httpx.AsyncClient,
    store: SessionStore,
    email: str,
    password: str,
    headers: dict[str, str],
) -> str:
    """The cookie of a new session (APIError when the API refuses the credentials)."""
    anonymous = AsyncDeployForge(base_url, "", http=http, max_retries=0, headers=headers)
    pair = await anonymous.post("/v1/auth/login", {"email": email, "password": password})
    cookie, _ = await store.create(
        email, pair["access_token"], pair["refresh_token"], pair["expires_in"]
    )
    return cookie


async def sign_out(api: UserApi) -> None:
    try:
        await api.post("/v1/auth/logout", {"refresh_token": api.session.refresh_token})
    except (APIError, SignedOut):
        pass  # already ended: forget it here all the same
    await api.store.delete(api.session)
