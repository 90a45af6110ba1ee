"""`AsyncDeployForge`: the SDK on httpx's asyncio client (the same core as `DeployForge`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Generic, TypeVar

import httpx

from deployforge_client import models
from deployforge_client._core import TERMINAL, Core, Prepared, ServerSentEvent, SSEParser, path
from deployforge_client.errors import APIConnectionError, WaitTimedOut

T = TypeVar("T")


class AsyncDeployForge:
    """`AsyncDeployForge(base_url, token)`; both default to DEPLOYFORGE_API_URL and
    DEPLOYFORGE_TOKEN. GETs, PUTs and DELETEs are retried on connection errors, 429
    (after `Retry-After`) and 5xx; POSTs too, always with the Idempotency-Key the SDK
    generates for them, so a retry never makes a second resource."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        max_retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`http`: an httpx client to share (its connection pool), left open by close();
        `headers`: sent with every request."""
        self._core = Core.from_env(base_url, token, max_retries, backoff)
        self._core.default_headers = dict(headers or {})
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, transport=transport)
        self.projects = AsyncProjects(self)
        self.services = AsyncServices(self)
        self.deployments = AsyncDeployments(self)
        self.environments = AsyncCollection[models.Environment](self, "/v1/environments")
        self.webhooks = AsyncCollection[models.Webhook](self, "/v1/webhooks")
        self.domains = AsyncCollection[models.Domain](self, "/v1/domains")
        self.pipelines = AsyncCollection[models.Pipeline](self, "/v1/pipelines")
        self.tokens = AsyncCollection[models.Token](self, "/v1/tokens")

    async def __aenter__(self) -> AsyncDeployForge:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def consistency_token(self) -> str | None:
        """The latest X-Consistency-Token a write answered with (sent on later reads);
        set it to carry read-your-writes over from another client."""
        return self._core.consistency

    @consistency_token.setter
    def consistency_token(self, token: str | None) -> None:
        self._core.consistency = token

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        prepared = self._core.prepare(
            method, path, json_body=json, params=params, idempotency_key=idempotency_key
        )
        attempt = 0
        while True:
            delay = None
            try:
                response = await self._send(prepared)
            except httpx.TransportError as exc:
                delay = self._core.retry_after(attempt, prepared)
                if delay is None:
                    raise APIConnectionError(f"{method} {path}: {exc!r}") from exc
            else:
                headers = {k.lower(): v for k, v in response.headers.items()}
                if response.status_code >= 400:
                    delay = self._core.retry_after(
                        attempt, prepared, status=response.status_code, headers=headers,
                        body=response.content,
                    )  # fmt: skip
                if delay is None:
                    return self._core.outcome(response.status_code, headers, response.content)
            await asyncio.sleep(delay)
            attempt += 1

    async def _send(self, prepared: Prepared) -> httpx.Response:
        return await self._http.request(
            prepared.method,
            prepared.url,
            headers=prepared.headers,
            params=prepared.params,
            json=prepared.json,
        )

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None, *, idempotency_key: str | None = None) -> Any:
        return await self.request("POST", path, json=json, idempotency_key=idempotency_key)

    async def patch(self, path: str, json: Any) -> Any:
        return await self.request("PATCH", path, json=json)

    async def put(self, path: str, json: Any) -> Any:
        return await self.request("PUT", path, json=json)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def paginate(self, path: str, **params: Any) -> AsyncIterator[Any]:
        """Every item of a list, page after page (`limit` per page, 200 at most)."""
        params.setdefault("limit", 200)
        while True:
            page = await self.get(path, **params)
            for item in page["items"]:
                yield item
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def events(
        self, path: str, *, last_event_id: str | None = None, **params: Any
    ) -> AsyncIterator[ServerSentEvent]:
        """A server-sent event stream; after a broken connection it resumes from the
        last event seen (Last-Event-ID), so nothing is repeated or lost.
        `last_event_id`: resume after that event (one a reconnecting browser sent)."""
        last_id: str | None = last_event_id
        attempt = 0
        while True:
            prepared = self._core.prepare("GET", path, params=params)
            headers = {**prepared.headers, "Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                async with self._http.stream(
                    "GET", prepared.url, headers=headers, params=prepared.params, timeout=None
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        lowered = {k.lower(): v for k, v in response.headers.items()}
                        self._core.outcome(response.status_code, lowered, response.content)
                    parser = SSEParser()
                    async for line in response.aiter_lines():
                        for event in parser.feed([line]):
                            last_id = event.id or last_id
                            attempt = 0
                            yield event
                    return
            except httpx.TransportError as exc:
                delay = self._core.retry_after(attempt, prepared)
                if delay is None:
                    raise APIConnectionError(f"GET {path}: {exc!r}") from exc
                await asyncio.sleep(delay)
                attempt += 1


class AsyncCollection(Generic[T]):
    """A resource's routes, typed: `list(**filters)` pages through every item;
    `get`, `create`, `update` (PATCH) and `delete` one."""

    def __init__(self, client: AsyncDeployForge, collection: str) -> None:
        self._client = client
        self._path = collection

    def list(self, **filters: Any) -> AsyncIterator[T]:
        return self._client.paginate(self._path, **filters)

    async def get(self, item_id: str) -> T:
        found: T = await self._client.get(path(self._path + "/{}", item_id))
        return found

    async def create(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> T:
        created: T = await self._client.post(
            self._path, dict(body), idempotency_key=idempotency_key
        )
        return created

    async def update(self, item_id: str, changes: Mapping[str, Any]) -> T:
        changed: T = await self._client.patch(path(self._path + "/{}", item_id), dict(changes))
        return changed

    async def delete(self, item_id: str) -> None:
        await self._client.delete(path(self._path + "/{}", item_id))


class AsyncProjects(AsyncCollection[models.Project]):
    def __init__(self, client: AsyncDeployForge) -> None:
        super().__init__(client, "/v1/projects")

    async def create(  # type: ignore[override]
        self, name: str, *, description: str | None = None, idempotency_key: str | None = None
    ) -> models.Project:
        body = {"name": name} | ({"description": description} if description else {})
        result: models.Project = await self._client.post(
            "/v1/projects", body, idempotency_key=idempotency_key
        )
        return result


class AsyncServices(AsyncCollection[models.Service]):
    def __init__(self, client: AsyncDeployForge) -> None:
        super().__init__(client, "/v1/services")

    async def deploy(
        self,
        service_id: str,
        *,
        environment_id: str,
        ref: str | None = None,
        strategy: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncDeploymentRun:
        body: dict[str, Any] = {"environment_id": environment_id}
        body |= {k: v for k, v in (("ref", ref), ("strategy", strategy)) if v is not None}
        created = await self._client.post(
            path("/v1/services/{}/deployments", service_id), body, idempotency_key=idempotency_key
        )
        return AsyncDeploymentRun(self._client, created)


class AsyncDeployments:
    def __init__(self, client: AsyncDeployForge) -> None:
        self._client = client

    async def get(self, deployment_id: str) -> models.Deployment:
        result: models.Deployment = await self._client.get(
            path("/v1/deployments/{}", deployment_id)
        )
        return result

    def list(self, **filters: Any) -> AsyncIterator[models.Deployment]:
        return self._client.paginate("/v1/deployments", **filters)

    async def cancel(self, deployment_id: str) -> models.Deployment:
        result: models.Deployment = await self._client.post(
            path("/v1/deployments/{}/cancel", deployment_id)
        )
        return result

    async def wait(
        self, deployment_id: str, *, timeout: float = 900, poll: float = 0.5
    ) -> models.Deployment:
        """The deployment once it has ended (succeeded, failed, cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            deployment = await self.get(deployment_id)
            if deployment["status"] in TERMINAL:
                return deployment
            if time.monotonic() > deadline:
                raise WaitTimedOut(deployment_id, deployment["status"], timeout)
            await asyncio.sleep(poll)


class AsyncDeploymentRun:
    """A deployment just started: `.wait()` for its end, `.stream()` its log and
    status as they come."""

    def __init__(self, client: AsyncDeployForge, data: models.Deployment) -> None:
        self._client = client
        self.data = data
        self.id: str = data["id"]

    async def wait(self, *, timeout: float = 900, poll: float = 0.5) -> models.Deployment:
        self.data = await self._client.deployments.wait(self.id, timeout=timeout, poll=poll)
        return self.data

    async def stream(self) -> AsyncIterator[ServerSentEvent]:
        """`log` events (each line), `status` events, and `end` last."""
        async for event in self._client.events(
            path("/v1/deployments/{}/logs", self.id), follow=True
        ):
            yield event
