"""Events, their metadata, and the codec that carries them through NATS.

An event is a frozen `msgspec.Struct` subclass of `Event` with a stable tag
(`tag="user.registered"`, chosen once, never a module path) and a
`schema_version`. The event body is the message payload; its metadata travels
in NATS headers, so a consumer can route on headers without decoding bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from nats.js.api import Header

from libs.storable import scrub_json


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every domain event. Subclasses set `tag=` and may bump `schema_version`."""

    schema_version: ClassVar[int] = 1


def event_type(event: Event) -> str:
    """The stable tag of an event, e.g. `user.registered`."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str), f"{type(event).__name__} has no string tag"
    return tag


class EventContext(msgspec.Struct, frozen=True, kw_only=True):
    """Who and what caused a batch of events; copied onto each event's metadata."""

    actor: str | None = None
    # The API token the actor used (None: a login session, or the system).
    credential: str | None = None
    organization_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


class EventMeta(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    event_type: str
    aggregate: str
    aggregate_id: str
    occurred_at: datetime
    schema_version: int = 1
    actor: str | None = None
    credential: str | None = None
    organization_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


E = TypeVar("E", bound=Event)


class Recorded(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    """An event as stored: its body, its metadata and its stream sequence."""

    meta: EventMeta
    event: E
    seq: int


# Header names: the JetStream ones come from nats-py, ours are prefixed DF-.
H_EVENT_TYPE = "DF-Event-Type"
H_SCHEMA_VERSION = "DF-Schema-Version"
H_OCCURRED_AT = "DF-Occurred-At"
H_ACTOR = "DF-Actor"
H_CREDENTIAL = "DF-Credential"
H_ORGANIZATION = "DF-Organization"
H_CORRELATION = "DF-Correlation-Id"
H_CAUSATION = "DF-Causation-Id"
H_TRACEPARENT = "traceparent"

_OPTIONAL_HEADERS = (
    ("actor", H_ACTOR),
    ("credential", H_CREDENTIAL),
    ("organization_id", H_ORGANIZATION),
    ("correlation_id", H_CORRELATION),
    ("causation_id", H_CAUSATION),
    ("traceparent", H_TRACEPARENT),
)


def meta_to_headers(meta: EventMeta) -> dict[str, str]:
    headers = {
        Header.MSG_ID.value: meta.event_id,
        H_EVENT_TYPE: meta.event_type,
        H_SCHEMA_VERSION: str(meta.schema_version),
        H_OCCURRED_AT: meta.occurred_at.isoformat(),
    }
    for attr, name in _OPTIONAL_HEADERS:
        value = getattr(meta, attr)
        if value:
            headers[name] = value
    return headers


def meta_from_headers(subject: str, headers: Mapping[str, str], namespace: str = "") -> EventMeta:
    aggregate, aggregate_id = split_subject(subject, namespace)
    optional = {attr: headers.get(name) or None for attr, name in _OPTIONAL_HEADERS}
    return EventMeta(
        event_id=headers[Header.MSG_ID.value],
        event_type=headers[H_EVENT_TYPE],
        aggregate=aggregate,
        aggregate_id=aggregate_id,
        occurred_at=datetime.fromisoformat(headers[H_OCCURRED_AT]),
        schema_version=int(headers.get(H_SCHEMA_VERSION, "1")),
        **optional,
    )


def split_subject(subject: str, namespace: str = "") -> tuple[str, str]:
    """`<ns>.user.usr_1` -> (`user`, `usr_1`)."""
    if namespace:
        subject = subject.removeprefix(namespace + ".")
    aggregate, _, aggregate_id = subject.partition(".")
    return aggregate, aggregate_id


def utcnow() -> datetime:
    return datetime.now(UTC)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventCodec(Generic[E]):
    """Encodes and decodes one aggregate's tagged union of events.

    An event stored at an older `schema_version` is decoded to a dict, passed
    through the upcasters registered for `(tag, version)` one version at a
    time, then converted: old events always still decode, history is never
    rewritten.
    """

    def __init__(self, union: Any, upcasters: Mapping[tuple[str, int], Upcaster] | None = None):
        self._decoder: msgspec.json.Decoder[E] = msgspec.json.Decoder(union)
        self._encoder = msgspec.json.Encoder()
        self._union = union
        self._upcasters = dict(upcasters or {})
        self._versions: dict[str, int] = {}
        for cls in _members(union):
            self._versions[str(cls.__struct_config__.tag)] = cls.schema_version

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._versions)

    def encode(self, event: E) -> bytes:
        return self._encoder.encode(event)

    def decode(self, data: bytes, event_type: str, version: int) -> E:
        # Events appended before input was checked at the door may hold text no
        # read model can store; every reader sees it replaced the same way.
        data = scrub_json(data)
        current = self._versions.get(event_type)
        if current is None or version >= current:
            return self._decoder.decode(data)
        body: dict[str, Any] = msgspec.json.decode(data)
        while version < current:
            body = self._upcasters[(event_type, version)](body)
            version += 1
        result: E = msgspec.convert(body, self._union)
        return result


def _members(union: Any) -> tuple[type[Event], ...]:
    args = getattr(union, "__args__", None)
    return tuple(args) if args else (union,)
