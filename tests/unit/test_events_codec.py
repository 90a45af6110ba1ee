"""The event codec: current events round-trip, old schema versions are upcast on read."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest

from libs.events import Event, EventCodec, event_type


class ThingNamed(Event, frozen=True, kw_only=True, tag="thing.named"):
    """Version 2 split version 1's `name` into `first` and `last`."""

    schema_version: ClassVar[int] = 2
    first: str
    last: str


class ThingDeleted(Event, frozen=True, kw_only=True, tag="thing.deleted"):
    reason: str = ""


ThingEvent = ThingNamed | ThingDeleted


def split_name(body: dict[str, Any]) -> dict[str, Any]:
    first, _, last = body.pop("name").partition(" ")
    return {**body, "first": first, "last": last}


def codec() -> EventCodec[Event]:
    return EventCodec(ThingEvent, {("thing.named", 1): split_name})


def test_the_codec_knows_each_tag_of_its_union() -> None:
    assert codec().types == frozenset({"thing.named", "thing.deleted"})
    assert event_type(ThingDeleted()) == "thing.deleted"


def test_a_current_event_round_trips() -> None:
    event = ThingNamed(first="Ada", last="Lovelace")
    data = codec().encode(event)

    assert codec().decode(data, "thing.named", 2) == event
    assert msgspec.json.decode(data) == {"type": "thing.named", "first": "Ada", "last": "Lovelace"}


def test_an_old_event_is_upcast_to_the_current_shape() -> None:
    old = b'{"type": "thing.named", "name": "Ada Lovelace"}'

    assert codec().decode(old, "thing.named", 1) == ThingNamed(first="Ada", last="Lovelace")


def test_an_event_type_at_version_one_needs_no_upcaster() -> None:
    data = codec().encode(ThingDeleted(reason="gone"))

    assert codec().decode(data, "thing.deleted", 1) == ThingDeleted(reason="gone")


class Renamed(Event, frozen=True, kw_only=True, tag="renamed"):
    schema_version: ClassVar[int] = 3
    title: str
    note: str


def test_upcasters_run_one_version_at_a_time() -> None:
    steps = {
        ("renamed", 1): lambda body: {"type": "renamed", "title": body["name"]},
        ("renamed", 2): lambda body: {**body, "note": "from v2"},
    }
    chain: EventCodec[Renamed] = EventCodec(Renamed, steps)

    assert chain.decode(b'{"type": "renamed", "name": "x"}', "renamed", 1) == Renamed(
        title="x", note="from v2"
    )
    assert chain.decode(b'{"type": "renamed", "title": "y"}', "renamed", 2) == Renamed(
        title="y", note="from v2"
    )


def test_an_old_event_without_its_upcaster_fails_loudly() -> None:
    with pytest.raises(KeyError):
        EventCodec(ThingEvent).decode(b'{"type": "thing.named", "name": "Ada"}', "thing.named", 1)
