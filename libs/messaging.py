"""Commands over NATS request/reply, served with `nats.micro`.

A service exposes one endpoint per command on `<ns>.df.<service>.<command>`
(replicas share the micro queue group). The reply carries the result as JSON
and, in `DF-Position`, the stream position of the last event the command
appended, which the gateway hands out as the consistency token. Errors travel
as micro error replies whose code is an `ErrorCode`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Generic, TypeVar

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER, Request
from nats.micro.service import Service
from opentelemetry import trace

from libs.errors import (
    AuthenticationRequired,
    DomainError,
    ErrorCode,
    ServiceUnavailable,
    ValidationFailed,
    error_from_code,
    validation_field,
    validation_message,
)
from libs.events import EventContext
from libs.eventstore import forget_appended, last_appended
from libs.metrics import COMMANDS
from libs.principal import Principal
from libs.settings import CoreSettings
from libs.storable import check_json
from libs.tracing import extract_context, inject_headers

log = structlog.get_logger("messaging")
tracer = trace.get_tracer("deployforge.messaging")

H_PRINCIPAL = "DF-Principal"
H_REQUEST_ID = "DF-Request-Id"
H_POSITION = "DF-Position"

C = TypeVar("C", bound=msgspec.Struct)

_principal_decoder = msgspec.json.Decoder(Principal)
_encoder = msgspec.json.Encoder()


class CommandContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a handler knows about the request besides the command itself."""

    principal: Principal | None = None
    request_id: str | None = None
    traceparent: str | None = None

    def caller(self) -> Principal:
        """Who sent the command; 401 when it came without a verified identity."""
        if self.principal is None:
            raise AuthenticationRequired("authentication required")
        return self.principal

    def event_context(self, organization_id: str | None = None) -> EventContext:
        """The metadata of the events this command causes: who, where, and its trace."""
        return EventContext(
            actor=self.principal.user_id if self.principal else None,
            credential=self.principal.token_id if self.principal else None,
            organization_id=organization_id,
            correlation_id=self.request_id,
            traceparent=self.traceparent,
        )


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    result: Any = None
    # `<context>:<stream sequence>` of the last event appended, if any.
    position: str | None = None


Handler = Callable[[C, CommandContext], Awaitable[Reply]]


class Endpoint(Generic[C]):
    def __init__(self, command: type[C], handler: Handler[C]) -> None:
        self.command = command
        self.handler = handler
        self.decoder: msgspec.json.Decoder[C] = msgspec.json.Decoder(command)


D = TypeVar("D")


def bind(
    deps: D, command: type[C], handler: Callable[[D, C, CommandContext], Awaitable[Reply]]
) -> Endpoint[C]:
    """An endpoint calling `handler(deps, command, ctx)`: handlers get their adapters
    from the composition root, not from globals."""

    async def call(cmd: C, ctx: CommandContext) -> Reply:
        return await handler(deps, cmd, ctx)

    return Endpoint(command, call)


async def connect_nats(settings: CoreSettings, name: str) -> NATS:
    """A connection for process `name` that reconnects forever (the server may restart)."""
    return await nats.connect(
        settings.nats_url,
        name=f"deployforge-{name}",
        max_reconnect_attempts=-1,
        user_credentials=settings.nats_credentials or None,
    )


def command_subject(namespace: str, service: str, command: str) -> str:
    prefix = f"{namespace}." if namespace else ""
    return f"{prefix}df.{service}.{command}"


def service_name(namespace: str, service: str) -> str:
    return f"df-{service}-{namespace}" if namespace else f"df-{service}"


class CommandServer:
    """A registered micro service whose commands run concurrently.

    nats.micro awaits each handler before taking the next message, which would
    serialise every command of an endpoint (and a slow argon2 login would hold
    up everything behind it). Each request runs in its own task instead; at
    most `concurrency` at once, beyond which the subscription waits.
    """

    def __init__(self, service: Service, concurrency: int) -> None:
        self.service = service
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    def spawn(
        self, handle: Callable[[Request], Coroutine[Any, Any, None]]
    ) -> Callable[[Request], Awaitable[None]]:
        async def dispatch(req: Request) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(handle(req))
            self._running.add(task)
            task.add_done_callback(self._finished)

        return dispatch

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def stop(self) -> None:
        """Stop taking commands, then let the ones in flight finish and reply."""
        await self.service.stop()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


async def serve(
    nc: NATS,
    *,
    service: str,
    namespace: str,
    version: str,
    endpoints: Mapping[str, Endpoint[Any]],
    concurrency: int = 64,
) -> CommandServer:
    """Register a micro service with one endpoint per command."""
    svc = await add_service(
        nc,
        name=service_name(namespace, service),
        version=version,
        description=f"DeployForge {service} commands",
    )
    server = CommandServer(svc, concurrency)
    for name, endpoint in endpoints.items():
        await svc.add_endpoint(
            name=name,
            subject=command_subject(namespace, service, name),
            handler=server.spawn(_wrap(service, name, endpoint)),
        )
    return server


def _wrap(
    service: str, name: str, endpoint: Endpoint[Any]
) -> Callable[[Request], Coroutine[Any, Any, None]]:
    async def handle(req: Request) -> None:
        headers = req.headers or {}
        structlog.contextvars.clear_contextvars()
        request_id = headers.get(H_REQUEST_ID)
        structlog.contextvars.bind_contextvars(request_id=request_id, command=f"{service}.{name}")
        with tracer.start_as_current_span(
            f"{service}.{name}", context=extract_context(headers), kind=trace.SpanKind.SERVER
        ):
            try:
                # Commands that never passed the gateway (agents, scripts) meet the
                # same rule before anything is appended: events are forever.
                check_json(req.data)
                command = _decode(endpoint, req.data)
                forget_appended()
                principal_raw = headers.get(H_PRINCIPAL)
                ctx = CommandContext(
                    principal=_principal_decoder.decode(principal_raw) if principal_raw else None,
                    request_id=request_id,
                    traceparent=inject_headers({}).get("traceparent"),
                )
                reply = await endpoint.handler(command, ctx)
            except msgspec.ValidationError as exc:
                COMMANDS.labels(service, name, ErrorCode.VALIDATION_ERROR.value).inc()
                await _respond_error(
                    req, ErrorCode.VALIDATION_ERROR, validation_message(str(exc)), _field_of(exc)
                )
                return
            except DomainError as exc:
                COMMANDS.labels(service, name, exc.code.value).inc()
                await _respond_error(req, exc.code, exc.message, exc.details)
                return
            except Exception:
                COMMANDS.labels(service, name, ErrorCode.INTERNAL_ERROR.value).inc()
                log.exception("command_failed")
                await _respond_error(req, ErrorCode.INTERNAL_ERROR, "internal error", {})
                return
            COMMANDS.labels(service, name, "ok").inc()
            # The store recorded what this command appended: a handler cannot forget it.
            position = reply.position or last_appended()
            out = {H_POSITION: position} if position else None
            await req.respond(_encoder.encode(reply.result), headers=out)

    return handle


def _decode(endpoint: Endpoint[C], data: bytes) -> C:
    try:
        return endpoint.decoder.decode(data)
    except msgspec.ValidationError:
        raise
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationFailed(f"malformed command: {exc}", "$", status=400) from None


def _field_of(exc: msgspec.ValidationError) -> dict[str, Any]:
    return {"field": validation_field(str(exc))}


async def _respond_error(
    req: Request, code: ErrorCode, message: str, details: Mapping[str, Any]
) -> None:
    await req.respond_error(code.value, message, data=_encoder.encode(dict(details)))


class CommandResult(msgspec.Struct, frozen=True):
    data: bytes
    position: str | None


class CommandBus:
    """Sends commands to the owning service and turns error replies back into exceptions."""

    def __init__(self, nc: NATS, *, namespace: str = "", timeout: float = 10.0) -> None:
        self.nc = nc
        self.namespace = namespace
        self.timeout = timeout

    async def request(
        self,
        service: str,
        command: str,
        payload: msgspec.Struct | Mapping[str, Any],
        *,
        principal: Principal | None = None,
        request_id: str | None = None,
    ) -> CommandResult:
        headers: dict[str, str] = {}
        if principal is not None:
            headers[H_PRINCIPAL] = _encoder.encode(principal).decode()
        if request_id:
            headers[H_REQUEST_ID] = request_id
        inject_headers(headers)
        subject = command_subject(self.namespace, service, command)
        try:
            msg = await self.nc.request(
                subject, _encoder.encode(payload), timeout=self.timeout, headers=headers
            )
        except nats.errors.NoRespondersError:
            raise ServiceUnavailable(f"the {service} service is not running") from None
        except nats.errors.TimeoutError:
            raise ServiceUnavailable(f"the {service} service did not answer in time") from None
        reply_headers = msg.headers or {}
        if ERROR_CODE_HEADER in reply_headers:
            details = msgspec.json.decode(msg.data) if msg.data else {}
            raise error_from_code(
                reply_headers[ERROR_CODE_HEADER], reply_headers.get(ERROR_HEADER, ""), details
            )
        return CommandResult(msg.data, reply_headers.get(H_POSITION))

    async def ping(self, service: str, timeout: float = 1.0) -> bool:
        """Whether at least one replica of `service` answers a micro PING."""
        try:
            await self.nc.request(
                f"$SRV.PING.{service_name(self.namespace, service)}", b"", timeout=timeout
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return False
        return True
