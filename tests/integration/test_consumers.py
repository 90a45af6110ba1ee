"""The one durable-consumer loop: waits for streams, survives its handler's bugs,
keeps long work alive, and treats idle time as normal."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import nats
import pytest
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from libs.consumers import DurableConsumer, in_progress
from libs.testing import Servers


@pytest.fixture
async def nc(servers: Servers) -> AsyncIterator[NATS]:
    client = await nats.connect(servers.nats_url)
    try:
        yield client
    finally:
        await client.close()


def _names() -> tuple[str, str]:
    token = secrets.token_hex(4)
    return f"T{token}_CONSUMERS", f"t{token}.consumers"


async def test_waits_quietly_for_its_stream_then_consumes(nc: NATS) -> None:
    js = nc.jetstream()
    stream, subject = _names()
    got: list[bytes] = []
    stop = asyncio.Event()

    async def handle(msgs: list[Msg]) -> None:
        for msg in msgs:
            got.append(msg.data)
            await msg.ack()
        if len(got) == 2:
            stop.set()

    consumer = DurableConsumer(
        js,
        stream,
        ConsumerConfig(durable_name="probe", ack_policy=AckPolicy.EXPLICIT),
        fetch_timeout=0.05,
    )
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(consumer.run(handle, stop))
        await asyncio.sleep(1.0)  # no stream yet: the loop waits, silently
        await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
        try:
            await js.publish(subject, b"one")
            await js.publish(subject, b"two")
            await asyncio.wait_for(task, timeout=20)
        finally:
            stop.set()
            await js.delete_stream(stream)
    assert got == [b"one", b"two"]
    assert logs == []


async def test_a_failing_handler_is_logged_retried_and_loses_nothing(nc: NATS) -> None:
    js = nc.jetstream()
    stream, subject = _names()
    await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
    calls = 0
    handled: list[bytes] = []
    stop = asyncio.Event()

    async def handle(msgs: list[Msg]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the handler")
        for msg in msgs:
            handled.append(msg.data)
            await msg.ack()
        stop.set()

    consumer = DurableConsumer(
        js,
        stream,
        ConsumerConfig(durable_name="probe", ack_policy=AckPolicy.EXPLICIT, ack_wait=1),
        fetch_timeout=0.2,
        retry_interval=0.1,
    )
    try:
        await js.publish(subject, b"kept")
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(consumer.run(handle, stop), timeout=30)
    finally:
        await js.delete_stream(stream)
    assert handled == [b"kept"]  # redelivered after the ack wait, not lost
    assert [e["event"] for e in logs] == ["consumer_failed"]
    assert logs[0]["log_level"] == "error"


async def test_in_progress_keeps_long_work_from_being_handed_out_again(nc: NATS) -> None:
    js = nc.jetstream()
    stream, subject = _names()
    await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
    try:
        await js.add_consumer(
            stream, ConsumerConfig(durable_name="slow", ack_policy=AckPolicy.EXPLICIT, ack_wait=1)
        )
        sub = await js.pull_subscribe_bind(durable="slow", stream=stream)
        await js.publish(subject, b"long job")
        (msg,) = await sub.fetch(1, timeout=5)
        async with in_progress(msg, every=0.3):
            await asyncio.sleep(2.5)  # well past the ack wait
            info = await js.consumer_info(stream, "slow")
            assert info.num_redelivered == 0
            assert info.num_ack_pending == 1
        await msg.ack()
    finally:
        await js.delete_stream(stream)
