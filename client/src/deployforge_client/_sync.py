"""`DeployForge`: the SDK on httpx's blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import httpx

from deployforge_client import models
from deployforge_client._core import TERMINAL, Core, Prepared, ServerSentEvent, SSEParser, path
from deployforge_client.errors import APIConnectionError, WaitTimedOut

T = TypeVar("T")


class DeployForge:
    """`DeployForge(base_url, token)`; both default to DEPLOYFORGE_API_URL and
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
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`headers`: sent with every request."""
        self._core = Core.from_env(base_url, token, max_retries, backoff)
        self._core.default_headers = dict(headers or {})
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self.projects = Projects(self)
        self.services = Services(self)
        self.deployments = Deployments(self)
        self.environments = Collection[models.Environment](self, "/v1/environments")
        self.webhooks = Collection[models.Webhook](self, "/v1/webhooks")
        self.domains = Collection[models.Domain](self, "/v1/domains")
        self.pipelines = Collection[models.Pipeline](self, "/v1/pipelines")
        self.tokens = Collection[models.Token](self, "/v1/tokens")

    def __enter__(self) -> DeployForge:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def consistency_token(self) -> str | None:
        """The latest X-Consistency-Token a write answered with (sent on later reads);
        set it to carry read-your-writes over from another client."""
        return self._core.consistency

    @consistency_token.setter
    def consistency_token(self, token: str | None) -> None:
        self._core.consistency = token

    def close(self) -> None:
        self._http.close()

    def request(
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
                response = self._send(prepared)
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
            time.sleep(delay)
            attempt += 1

    def _send(self, prepared: Prepared) -> httpx.Response:
        return self._http.request(
            prepared.method,
            prepared.url,
            headers=prepared.headers,
            params=prepared.params,
            json=prepared.json,
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, *, idempotency_key: str | None = None) -> Any:
        return self.request("POST", path, json=json, idempotency_key=idempotency_key)

    def patch(self, path: str, json: Any) -> Any:
        return self.request("PATCH", path, json=json)

    def put(self, path: str, json: Any) -> Any:
        return self.request("PUT", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def paginate(self, path: str, **params: Any) -> Iterator[Any]:
        """Every item of a list, page after page (`limit` per page, 200 at most)."""
        params.setdefault("limit", 200)
        while True:
            page = self.get(path, **params)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def events(
        self, path: str, *, last_event_id: str | None = None, **params: Any
    ) -> Iterator[ServerSentEvent]:
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
                with self._http.stream(
                    "GET", prepared.url, headers=headers, params=prepared.params, timeout=None
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        lowered = {k.lower(): v for k, v in response.headers.items()}
                        self._core.outcome(response.status_code, lowered, response.content)
                    parser = SSEParser()
                    for event in parser.feed(response.iter_lines()):
                        last_id = event.id or last_id
                        attempt = 0
                        yield event
                    return
            except httpx.TransportError as exc:
                delay = self._core.retry_after(attempt, prepared)
                if delay is None:
                    raise APIConnectionError(f"GET {path}: {exc!r}") from exc
                time.sleep(delay)
                attempt += 1


class Collection(Generic[T]):
    """A resource's routes, typed: `list(**filters)` pages through every item;
    `get`, `create`, `update` (PATCH) and `delete` one."""

    def __init__(self, client: DeployForge, collection: str) -> None:
        self._client = client
        self._path = collection

    def list(self, **filters: Any) -> Iterator[T]:
        return self._client.paginate(self._path, **filters)

    def get(self, item_id: str) -> T:
        found: T = self._client.get(path(self._path + "/{}", item_id))
        return found

    def create(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> T:
        created: T = self._client.post(self._path, dict(body), idempotency_key=idempotency_key)
        return created

    def update(self, item_id: str, changes: Mapping[str, Any]) -> T:
        changed: T = self._client.patch(path(self._path + "/{}", item_id), dict(changes))
        return changed

    def delete(self, item_id: str) -> None:
        self._client.delete(path(self._path + "/{}", item_id))


class Projects(Collection[models.Project]):
    def __init__(self, client: DeployForge) -> None:
        super().__init__(client, "/v1/projects")

    def create(  # type: ignore[override]
        self, name: str, *, description: str | None = None, idempotency_key: str | None = None
    ) -> models.Project:
        body = {"name": name} | ({"description": description} if description else {})
        result: models.Project = self._client.post(
            "/v1/projects", body, idempotency_key=idempotency_key
        )
        return result


class Services(Collection[models.Service]):
    def __init__(self, client: DeployForge) -> None:
        super().__init__(client, "/v1/services")

    def deploy(
        self,
        service_id: str,
        *,
        environment_id: str,
        ref: str | None = None,
        strategy: str | None = None,
        idempotency_key: str | None = None,
    ) -> DeploymentRun:
        body: dict[str, Any] = {"environment_id": environment_id}
        body |= {k: v for k, v in (("ref", ref), ("strategy", strategy)) if v is not None}
        created = self._client.post(
            path("/v1/services/{}/deployments", service_id), body, idempotency_key=idempotency_key
        )
        return DeploymentRun(self._client, created)


class Deployments:
    def __init__(self, client: DeployForge) -> None:
        self._client = client

    def get(self, deployment_id: str) -> models.Deployment:
        result: models.Deployment = self._client.get(path("/v1/deployments/{}", deployment_id))
        return result

    def list(self, **filters: Any) -> Iterator[models.Deployment]:
        return self._client.paginate("/v1/deployments", **filters)

    def cancel(self, deployment_id: str) -> models.Deployment:
        result: models.Deployment = self._client.post(
            path("/v1/deployments/{}/cancel", deployment_id)
        )
        return result

    def wait(
        self, deployment_id: str, *, timeout: float = 900, poll: float = 0.5
    ) -> models.Deployment:
        """The deployment once it has ended (succeeded, failed, cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            deployment = self.get(deployment_id)
            if deployment["status"] in TERMINAL:
                return deployment
            if time.monotonic() > deadline:
                raise WaitTimedOut(deployment_id, deployment["status"], timeout)
            time.sleep(poll)


class DeploymentRun:
    """A deployment just started: `.wait()` for its end, `.stream()` its log and
    status as they come."""

    def __init__(self, client: DeployForge, data: models.Deployment) -> None:
        self._client = client
        self.data = data
        self.id: str = data["id"]

    def wait(self, *, timeout: float = 900, poll: float = 0.5) -> models.Deployment:
        self.data = self._client.deployments.wait(self.id, timeout=timeout, poll=poll)
        return self.data

    def stream(self) -> Iterator[ServerSentEvent]:
        """`log` events (each line), `status` events, and `end` last."""
        yield from self._client.events(path("/v1/deployments/{}/logs", self.id), follow=True)
