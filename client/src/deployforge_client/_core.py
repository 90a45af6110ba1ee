"""What the sync and async clients share, with no I/O: the request as sent (auth,
Idempotency-Key, read-your-writes token), when to retry and after how long, the
answer as data or as the exception for its error code, and server-sent events."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from deployforge_client.errors import BY_CODE, APIError

USER_AGENT = "deployforge-python/0.1.0"
# Deployment statuses after which nothing changes.
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rolled_back"})
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# Methods that do the same thing however often they are sent.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Prepared:
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, str] | None
    json: Any


@dataclass
class Core:
    base_url: str
    token: str | None
    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    # The latest X-Consistency-Token a write answered with: sent on later reads, so a
    # read follows the writes this client made (read-your-writes).
    consistency: str | None = field(default=None)
    # Sent with every request (a proxy's headers, a User-Agent of your own).
    default_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, base_url: str | None, token: str | None, max_retries: int, backoff: float
    ) -> Core:
        url = base_url or os.environ.get("DEPLOYFORGE_API_URL") or "http://127.0.0.1:8080"
        return cls(
            base_url=url.rstrip("/"),
            # "" is no credential at all (a login call); None reads the environment.
            token=token if token is not None else os.environ.get("DEPLOYFORGE_TOKEN"),
            max_retries=max_retries,
            backoff=backoff,
        )

    def prepare(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Prepared:
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        if method == "POST":
            # Every POST carries a key, so that a retry never makes a second resource.
            sent["Idempotency-Key"] = idempotency_key or f"sdk-{uuid.uuid4()}"
        if self.consistency and method == "GET":
            sent["X-Consistency-Token"] = self.consistency
        sent |= self.default_headers
        sent |= headers or {}
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        return Prepared(method, self.base_url + path, sent, query or None, json_body)

    def retry_after(
        self,
        attempt: int,
        request: Prepared,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> float | None:
        """Seconds to wait before sending `request` again, or None: do not retry.
        `status` None: the connection failed before an answer."""
        if attempt >= self.max_retries:
            return None
        safe = request.method in IDEMPOTENT or "Idempotency-Key" in request.headers
        if status is None:
            return self._delay(attempt, None) if safe else None
        if status == 409 and "Idempotency-Key" in request.headers:
            # The first attempt of this very request is still being handled.
            return self._delay(attempt, None) if _names_idempotency_key(body) else None
        if status not in RETRIED_STATUSES:
            return None
        if status == 429:  # refused before it was handled: always safe
            return self._delay(attempt, (headers or {}).get("retry-after"))
        return self._delay(attempt, (headers or {}).get("retry-after")) if safe else None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not a secret)

    def outcome(self, status: int, headers: dict[str, str], content: bytes) -> Any:
        """The answer's data; the exception for its error code when it is an error."""
        token = headers.get("x-consistency-token")
        if token:
            self.consistency = token
        if status >= 400:
            raise error_from(status, headers, content)
        if status == 204 or not content:
            return None
        return json.loads(content)


def error_from(status: int, headers: dict[str, str], content: bytes) -> APIError:
    try:
        envelope = json.loads(content)["error"]
        code, message = str(envelope["code"]), str(envelope["message"])
        details, request_id = envelope.get("details") or {}, envelope.get("request_id")
    except (ValueError, KeyError, TypeError):
        code, message, details, request_id = (
            "ERROR",
            content[:200].decode(errors="replace"),
            {},
            None,
        )
    cls = BY_CODE.get(code, APIError)
    return cls(message, status=status, details=details, request_id=request_id, headers=headers)


def _names_idempotency_key(body: bytes) -> bool:
    try:
        return bool(json.loads(body)["error"]["details"].get("field") == "Idempotency-Key")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def path(template: str, *ids: str) -> str:
    """`/v1/deployments/{}` with each id quoted as one path segment."""
    return template.format(*(quote(i, safe="") for i in ids))


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: Any
    id: str | None = None


class SSEParser:
    """Server-sent events from lines as they arrive (text/event-stream)."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, lines: Iterable[str]) -> Iterator[ServerSentEvent]:
        for line in lines:
            if line == "":
                if self._data:
                    raw = "\n".join(self._data)
                    try:
                        data: Any = json.loads(raw)
                    except ValueError:
                        data = raw
                    yield ServerSentEvent(self._event, data, self._id)
                self._event, self._data = "message", []
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)
                elif name == "id":
                    self._id = value
