"""Routes that describe themselves: the scope they need and their body and reply types.

`Api` wraps aiohttp's RouteTableDef; each registration is also recorded as
a `RouteSpec`, from which the OpenAPI document is generated and the auth
middleware reads the scope a route requires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from libs import storable
from libs.errors import ValidationFailed, validation_field, validation_message

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SPEC_ATTR = "__deployforge_route__"


class RouteSpec(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    path: str
    summary: str
    tag: str
    # None: public. Otherwise the token scope the caller needs.
    scope: str | None = "read"
    body: Any = None
    form: bool = False
    response: Any = None
    status: int = 200
    # A msgspec Struct whose fields are the query parameters the route reads (a list
    # route also takes `limit` and `cursor`: docs only, the route reads the query).
    query: Any = None
    # Also answers as a text/event-stream (`?follow=true`, or always).
    stream: bool = False
    # Health probes, metrics and documents are exempt from rate limits.
    rate_limited: bool = True


REGISTRY: list[RouteSpec] = []
# Each route's handler, by method and path (what the OpenAPI tests read the source of).
HANDLERS: dict[tuple[str, str], Handler] = {}


class Api:
    """One per resource module: `api = Api("tokens")`, then `@api.post(...)`."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes = web.RouteTableDef()

    def route(self, method: str, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            rs = RouteSpec(method=method, path=path, tag=self.tag, **spec)
            REGISTRY.append(rs)
            HANDLERS[(method, path)] = handler
            setattr(handler, SPEC_ATTR, rs)
            self.routes.route(method, path)(handler)
            return handler

        return register

    def get(self, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **spec)

    def post(self, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **spec)

    def put(self, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **spec)

    def patch(self, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **spec)

    def delete(self, path: str, **spec: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **spec)


def spec_of(request: web.Request) -> RouteSpec | None:
    handler = request.match_info.handler
    spec = getattr(handler, SPEC_ATTR, None)
    return spec if isinstance(spec, RouteSpec) else None


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


async def read_json(request: web.Request, typ: type[T]) -> T:
    """The request body as `typ`; a 4xx naming the field when it is not one."""
    content_type = request.content_type
    if content_type != "application/json":
        raise ValidationFailed(
            "send the body as application/json",
            "Content-Type",
            status=415,
            received=content_type or None,
        )
    raw = await request.read()
    decoder = _decoders.get(typ)
    if decoder is None:
        decoder = _decoders[typ] = msgspec.json.Decoder(typ)
    # First: a refusal for an unknown field must not quote an unstorable name back, and
    # a lone surrogate escape (which msgspec calls malformed) is named as a field here.
    storable.check_json(raw)
    try:
        body: T = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(_message(exc), _field(exc)) from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed(f"malformed JSON: {exc}", "$", status=400) from None
    except UnicodeDecodeError:
        raise ValidationFailed("the body is not valid UTF-8", "$", status=400) from None
    except RecursionError:
        raise ValidationFailed(
            f"the body is nested deeper than {storable.MAX_DEPTH} levels", "$"
        ) from None
    return body


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: web.Request, typ: type[T]) -> T:
    """The request's form fields as `typ`; a 4xx naming the field when they are not one."""
    if request.content_type not in FORM_TYPES:
        raise ValidationFailed(
            "send the form as application/x-www-form-urlencoded",
            "Content-Type",
            status=415,
            received=request.content_type or None,
        )
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. multipart without a boundary
        raise ValidationFailed(f"malformed form: {exc}", "body", status=400) from None
    return convert({k: v for k, v in form.items() if isinstance(v, str)}, typ)


def convert(data: dict[str, Any], typ: type[T]) -> T:
    """A form or query mapping as `typ` (strings converted), or a 422 naming the field."""
    storable.check(data)
    try:
        result: T = msgspec.convert(data, typ, strict=False)
        return result
    except msgspec.ValidationError as exc:
        raise ValidationFailed(_message(exc), _field(exc)) from None


def _field(exc: msgspec.ValidationError) -> str:
    return storable.scrub(validation_field(str(exc)))


def _message(exc: msgspec.ValidationError) -> str:
    # An error names what it refused; never echo a character no store can hold.
    return storable.scrub(validation_message(str(exc)))


_encoder = msgspec.json.Encoder()


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )
