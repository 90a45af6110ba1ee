"""A command's reply carries the position of what it appended, whether or not its
handler remembered to say so: the store records it."""

from __future__ import annotations

import secrets

import msgspec
import nats

from libs.events import Event
from libs.eventstore import EventStore, StreamSpec
from libs.messaging import CommandBus, CommandContext, Endpoint, Reply, serve
from libs.testing import Servers


class Note(Event, frozen=True, kw_only=True, tag="note.written"):
    text: str


class Write(msgspec.Struct, frozen=True, kw_only=True):
    note_id: str
    text: str


class Read(msgspec.Struct, frozen=True, kw_only=True):
    note_id: str


async def test_the_reply_carries_the_last_appended_position(servers: Servers) -> None:
    namespace = f"t{secrets.token_hex(4)}"
    spec = StreamSpec(context="notes", aggregates=("note",))
    nc = await nats.connect(servers.nats_url)
    store = EventStore(nc.jetstream(), namespace=namespace)
    try:
        await store.ensure_stream(spec)

        async def write(cmd: Write, _: CommandContext) -> Reply:
            await store.append("note", cmd.note_id, [Note(text=cmd.text)], expected_version=0)
            return Reply(result={"ok": True})  # says nothing of its position

        async def read(cmd: Read, _: CommandContext) -> Reply:
            return Reply(result={"id": cmd.note_id})

        server = await serve(
            nc,
            service="notes",
            namespace=namespace,
            version="0.0.1",
            endpoints={"write": Endpoint(Write, write), "read": Endpoint(Read, read)},
        )
        bus = CommandBus(nc, namespace=namespace)
        first = await bus.request("notes", "write", Write(note_id="n1", text="a"))
        second = await bus.request("notes", "write", Write(note_id="n2", text="b"))
        looked = await bus.request("notes", "read", Read(note_id="n1"))
        await server.stop()
        assert first.position == "notes:1"
        assert second.position == "notes:2"
        assert looked.position is None  # appended nothing: no position, not a stale one
    finally:
        await store.delete_streams([spec])
        await nc.close()
