"""Live deployment events over a WebSocket, the fastDeploy way.

The client connects to `/v1/ws` without credentials and sends
`{"access_token": ...}` (an access JWT or an API token) first; it is answered
`{"type": "authentication", "status": "success"}`, or `"failure"` with a
message and close code 4001. From then on every deployment event of the
caller's organizations arrives as one JSON message, narrowed by optional
filters given in that first message or later in `{"type": "subscribe", ...}`.
A client may send a fresh `access_token` at any time (before the old one
expires); the credential is checked again every few seconds, so a revoked
token or a membership that ended stops the feed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, Literal

import msgspec
import structlog
from aiohttp import WSMessage, WSMsgType, web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from gateway import keys
from gateway.routing import Api, convert
from gateway.scoping import can_see
from libs.errors import AuthenticationRequired, AuthorizationDenied, ValidationFailed
from libs.events import Event, meta_from_headers
from libs.eventstore import EventStore
from libs.principal import Principal
from services.deploy.events import (
    CODECS,
    STREAM,
    DeploymentCancelled,
    DeploymentCreated,
    DeploymentFailed,
    StepFinished,
    StepStarted,
)
from services.deploy.status import STATUS_AFTER

log = structlog.get_logger("gateway.live")
api = Api("live")

AUTHENTICATION_TIMEOUT = 10.0
# How often a connected socket's credential is checked again (the
# authenticator's own caches make a check cheap; revocations reach it by event).
RECHECK_SECONDS = 10.0
CLOSE_UNAUTHENTICATED = 4001

EVENT_TYPES = frozenset(STATUS_AFTER)
_codec = CODECS["deployment"]


class LiveEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment event as subscribers see it."""

    type: str
    id: str
    # The step an event is about (a failure names the step that failed).
    name: str | None
    # A step's state (running, success, failure), else the deployment's status.
    state: str | None
    deployment_id: str
    organization_id: str | None
    occurred_at: datetime
    status: str
    data: dict[str, Any]


def describe(msg: Msg, namespace: str) -> tuple[LiveEvent, Event] | None:
    """A deployment event message as a `LiveEvent` (None if it is not one we can read)."""
    try:
        meta = meta_from_headers(msg.subject, msg.headers or {}, namespace)
        event = _codec.decode(msg.data, meta.event_type, meta.schema_version)
    except (KeyError, ValueError, msgspec.ValidationError, msgspec.DecodeError):
        log.warning("unreadable_deployment_event", subject=msg.subject)
        return None
    status = STATUS_AFTER.get(meta.event_type, "unknown")
    name: str | None = None
    state: str | None = status
    match event:
        case StepStarted():
            name, state = event.name, "running"
        case StepFinished():
            name, state = event.name, event.state
        case DeploymentFailed():
            name = event.step
    live = LiveEvent(
        type=meta.event_type,
        id=meta.event_id,
        name=name,
        state=state,
        deployment_id=meta.aggregate_id,
        organization_id=meta.organization_id,
        occurred_at=meta.occurred_at,
        status=status,
        data=msgspec.to_builtins(event),
    )
    return live, event


def failure_reason(event: Event) -> str | None:
    if isinstance(event, DeploymentFailed | DeploymentCancelled):
        return event.reason
    return None


def response_headers(request: web.Request) -> dict[str, str]:
    """The headers the middlewares add after a handler returns, which a streamed
    response must carry from the start: they are sent before the handler ends."""
    headers = dict(request.get(keys.EXTRA_HEADERS) or {})
    headers["X-Request-Id"] = request[keys.REQUEST_ID]
    return headers


def deployment_events(js: JetStreamContext, namespace: str) -> tuple[str, EventStore]:
    """The deploy stream's name, and a store that spells its subjects (no I/O)."""
    store = EventStore(js, namespace=namespace)
    return store.stream_name(STREAM.context), store


class Filters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    deployment_id: str | None = None
    service_id: str | None = None
    events: list[str] | None = None


class Hello(Filters, frozen=True, kw_only=True, forbid_unknown_fields=True):
    access_token: str


class Subscribe(Filters, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: Literal["subscribe"]


_FILTER_FIELDS = frozenset(Filters.__struct_fields__)
_encoder = msgspec.json.Encoder()


def _filters_of(message: Filters) -> Filters:
    for i, tag in enumerate(message.events or ()):
        if tag not in EVENT_TYPES:
            raise ValidationFailed(f"unknown event type '{tag}'", f"$.events[{i}]")
    return Filters(
        deployment_id=message.deployment_id, service_id=message.service_id, events=message.events
    )


class _Socket:
    """One client: its credential, its filters and its subscription."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.app = request.app
        self.ws = ws
        self.namespace = request.app[keys.SETTINGS].namespace
        self.credential = ""
        self.principal: Principal | None = None
        self.checked_at = 0.0
        self.filters = Filters()
        self.sub: JetStreamContext.PushSubscription | None = None
        self._send_lock = asyncio.Lock()
        # deployment id -> service id, learned from events or the read model.
        self._services: dict[str, str | None] = {}

    # --- sending ---------------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        async with self._send_lock:
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(_encoder.encode(message).decode())
            except ConnectionResetError:
                pass  # the client went away; the receive loop sees it next

    async def error(self, message: str, field: str | None = None) -> None:
        body: dict[str, Any] = {"type": "error", "message": message}
        if field is not None:
            body["field"] = field
        await self.send(body)

    async def refuse(self, message: str) -> None:
        await self.send({"type": "authentication", "status": "failure", "message": message})
        await self.ws.close(code=CLOSE_UNAUTHENTICATED, message=b"authentication failed")

    # --- client messages -------------------------------------------------------------------

    async def decode(self, msg: WSMessage) -> dict[str, Any] | None:
        """A client frame as a JSON object; None (after telling the client) otherwise."""
        if msg.type is not WSMsgType.TEXT:
            await self.error("send JSON objects in text frames")
            return None
        try:
            body = msgspec.json.decode(msg.data)
        except msgspec.DecodeError as exc:
            await self.error(f"malformed JSON: {exc}")
            return None
        if not isinstance(body, dict):
            await self.error("send a JSON object")
            return None
        return body

    async def authenticate(self, body: dict[str, Any]) -> bool:
        """Verify `{"access_token": ...}`; refuse and close the socket if it is not good."""
        # Some clients tag the message ({"type": "authenticate", ...}); the token says it all.
        body = {k: v for k, v in body.items() if k != "type"}
        try:
            hello = convert(body, Hello)
            filters = _filters_of(hello)
            principal = await self._principal(hello.access_token)
        except (AuthenticationRequired, AuthorizationDenied, ValidationFailed) as exc:
            await self.refuse(exc.message)
            return False
        self.credential, self.principal = hello.access_token, principal
        self.checked_at = time.monotonic()
        if _FILTER_FIELDS & body.keys():
            self.filters = filters
        return True

    async def wait_for_hello(self) -> bool:
        """The first message must authenticate; bad JSON only earns an error."""
        deadline = time.monotonic() + AUTHENTICATION_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = await self.ws.receive(timeout=remaining)
            except TimeoutError:
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return False
            body = await self.decode(msg)
            if body is None:
                continue
            if "access_token" not in body:
                await self.refuse('authenticate first: send {"access_token": "<token>"}')
                return False
            return await self.authenticate(body)
        await self.refuse('authentication timed out: send {"access_token": "<token>"} first')
        return False

    async def handle(self, msg: WSMessage) -> bool:
        """One message after authentication; False once the socket should close."""
        body = await self.decode(msg)
        if body is None:
            return True
        if "access_token" in body:
            if not await self.authenticate(body):
                return False
            await self.send({"type": "authentication", "status": "success"})
            return True
        kind = body.get("type")
        if kind == "subscribe":
            try:
                self.filters = _filters_of(convert(body, Subscribe))
            except ValidationFailed as exc:
                await self.error(exc.message, exc.details.get("field"))
                return True
            await self.send({"type": "subscribed", "filters": self.filters})
        elif kind == "ping":
            await self.send({"type": "pong"})
        else:
            await self.error(f"unknown message type {kind!r}: use 'subscribe' or 'ping'", "$.type")
        return True

    async def _principal(self, credential: str) -> Principal:
        principal = await self.app[keys.AUTHENTICATOR].authenticate(credential)
        if "read" not in principal.scopes:
            raise AuthorizationDenied("this credential lacks the 'read' scope")
        return principal

    async def recheck(self) -> bool:
        """Authenticate the credential again; refuse and close if it no longer holds."""
        try:
            self.principal = await self._principal(self.credential)
        except (AuthenticationRequired, AuthorizationDenied) as exc:
            await self.refuse(exc.message)
            return False
        self.checked_at = time.monotonic()
        return True

    # --- events ----------------------------------------------------------------------------

    async def listen(self) -> None:
        js = self.app[keys.NC].jetstream()
        stream, store = deployment_events(js, self.namespace)
        self.sub = await js.subscribe(
            store.subject("deployment", "*"),
            stream=stream,
            cb=self._on_event,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )

    async def stop(self) -> None:
        if self.sub is not None:
            sub, self.sub = self.sub, None
            await close_subscription(self.app[keys.NC].jetstream(), sub)

    async def _on_event(self, msg: Msg) -> None:
        try:
            described = describe(msg, self.namespace)
            if described is None:
                return
            live, event = described
            if isinstance(event, DeploymentCreated):
                self._remember(live.deployment_id, event.service_id)
            if await self._admits(live):
                await self.send(live)
        except Exception:
            # Never let one event end the subscription's delivery task.
            log.exception("live_event_failed", subject=msg.subject)

    async def _admits(self, live: LiveEvent) -> bool:
        principal, filters = self.principal, self.filters
        if principal is None or not can_see(principal, live.organization_id):
            return False
        if filters.events is not None and live.type not in filters.events:
            return False
        for wanted in (principal.deployment_id, filters.deployment_id):
            if wanted is not None and wanted != live.deployment_id:
                return False
        for wanted in (principal.service_id, filters.service_id):
            if wanted is not None and wanted != await self._service_of(live.deployment_id):
                return False
        return True

    def _remember(self, deployment_id: str, service_id: str | None) -> None:
        if len(self._services) >= 10_000:
            self._services.clear()
        self._services[deployment_id] = service_id

    async def _service_of(self, deployment_id: str) -> str | None:
        if deployment_id not in self._services:
            service_id = await self.app[keys.POOL].fetchval(
                "SELECT service_id FROM deploy.deployments WHERE id = $1", deployment_id
            )
            self._remember(deployment_id, service_id)
        return self._services[deployment_id]


async def close_subscription(js: JetStreamContext, sub: JetStreamContext.PushSubscription) -> None:
    """Stop delivery and delete the ephemeral consumer now, not after the server's
    inactivity timeout: a dashboard that reconnects often would otherwise pile them up."""
    try:
        await sub.unsubscribe()
        info = await sub.consumer_info()
        await js.delete_consumer(info.stream_name, info.name)
    except Exception as exc:  # the connection is closing: the server cleans up
        log.debug("consumer_cleanup_failed", error=str(exc))


@api.get(
    "/v1/ws",
    summary="Live deployment events (WebSocket; send {access_token} first)",
    scope=None,
)
async def live_events(request: web.Request) -> web.StreamResponse:
    # Clients send a token and filters, never more than a few hundred bytes.
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    ws.headers.update(response_headers(request))
    if not ws.can_prepare(request).ok:
        raise ValidationFailed("connect with a WebSocket upgrade", "Upgrade", status=400)
    await ws.prepare(request)
    socket = _Socket(request, ws)
    try:
        if not await socket.wait_for_hello():
            return ws
        # Subscribed before "success", so no event after it is missed.
        await socket.listen()
        await socket.send({"type": "authentication", "status": "success"})
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=RECHECK_SECONDS)
            except TimeoutError:
                msg = None
            due = time.monotonic() - socket.checked_at >= RECHECK_SECONDS
            if due and not await socket.recheck():
                break
            if msg is None:
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if not await socket.handle(msg):
                break
    except Exception:
        # The upgrade is done: the error middleware can no longer answer.
        log.exception("live_socket_failed")
        await ws.close(code=1011, message=b"internal error")
    finally:
        await socket.stop()
        await ws.close()
    return ws
