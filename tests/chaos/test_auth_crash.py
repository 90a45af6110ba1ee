"""SIGKILL of the identity service during a burst of commands loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import asyncpg
import nats

from libs.aggregate import load_state
from libs.errors import DomainError
from libs.eventstore import EventStore
from libs.messaging import CommandBus
from libs.principal import Principal
from libs.projections import checkpoint
from libs.testing import Suite
from services.auth.events import STREAM
from services.auth.handlers import ORGS

WORKERS = 8


async def _spawn(suite: Suite) -> asyncio.subprocess.Process:
    env = {**os.environ, **suite.environ(), "DEPLOYFORGE_LOG_FORMAT": "json"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.auth.main",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_answering(bus: CommandBus) -> None:
    for _ in range(300):
        if await bus.ping("auth", timeout=0.2):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the auth service never answered")


async def test_sigkill_during_a_burst_loses_no_acknowledged_command(suite: Suite) -> None:
    nc = await nats.connect(suite.nats_url)
    bus = CommandBus(nc, namespace=suite.namespace, timeout=3)
    caller = Principal(user_id="usr_chaos")
    acked: list[str] = []
    failed = 0
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        nonlocal failed
        i = 0
        while not stop.is_set():
            i += 1
            try:
                result = await bus.request(
                    "auth", "create_organization", {"name": f"burst {n} {i}"}, principal=caller
                )
            except (DomainError, nats.errors.Error):
                failed += 1
                await asyncio.sleep(0.02)
                continue
            acked.append(json.loads(result.data)["id"])

    process = await _spawn(suite)
    try:
        await _until_answering(bus)
        workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
        while len(acked) < 40:
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        acked_at_kill = len(acked)
        await asyncio.sleep(0.5)  # commands fail while nothing answers
        process = await _spawn(suite)
        await _until_answering(bus)
        while len(acked) < acked_at_kill + 40:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*workers)
        assert failed > 0, "the kill should have refused some commands"

        store = EventStore(nc.jetstream(), namespace=suite.namespace)
        store.register(STREAM)
        for org_id in acked:
            state, _ = await load_state(store, ORGS, org_id)
            assert state.organization_id == org_id, f"{org_id} acknowledged but not stored"

        last = await store.last_sequence("auth")
        conn = await asyncpg.connect(suite.database_url)
        try:
            for _ in range(500):
                if await checkpoint(conn, "auth") >= last:
                    break
                await asyncio.sleep(0.02)
            rows = await conn.fetch("SELECT id FROM auth.organizations")
        finally:
            await conn.close()
        assert set(acked) <= {r["id"] for r in rows}
        assert len(set(acked)) == len(acked)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()
        await nc.close()
