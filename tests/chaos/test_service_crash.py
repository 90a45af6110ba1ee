"""SIGKILL of a service during a burst of commands loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
import nats
import pytest

from libs.aggregate import AggregateType, load_state
from libs.errors import DomainError
from libs.eventstore import EventStore, StreamSpec
from libs.messaging import CommandBus
from libs.principal import Principal
from libs.projections import checkpoint
from libs.testing import Suite
from services.auth.events import STREAM as AUTH_STREAM
from services.auth.handlers import ORGS
from services.deploy.events import STREAM as DEPLOY_STREAM
from services.deploy.handlers import PROJECTS

WORKERS = 8


class Case(msgspec.Struct, frozen=True):
    service: str
    command: str
    payload: Callable[[int, int], dict[str, Any]]
    stream: StreamSpec
    aggregate: AggregateType[Any]
    table: str


CASES = {
    "auth": Case(
        "auth",
        "create_organization",
        lambda n, i: {"name": f"burst {n} {i}"},
        AUTH_STREAM,
        ORGS,
        "auth.organizations",
    ),
    "deploy": Case(
        "deploy",
        "create_project",
        lambda n, i: {"name": f"burst {n} {i}"},
        DEPLOY_STREAM,
        PROJECTS,
        "deploy.projects",
    ),
}
CALLER = Principal(
    user_id="usr_chaos", organization_id="org_chaos", memberships={"org_chaos": "owner"}
)


async def _spawn(suite: Suite, service: str) -> asyncio.subprocess.Process:
    env = {**os.environ, **suite.environ(), "DEPLOYFORGE_LOG_FORMAT": "json"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"services.{service}.main",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_answering(bus: CommandBus, service: str) -> None:
    for _ in range(300):
        if await bus.ping(service, timeout=0.2):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the {service} service never answered")


@pytest.mark.parametrize("name", sorted(CASES))
async def test_sigkill_during_a_burst_loses_no_acknowledged_command(
    suite: Suite, name: str
) -> None:
    case = CASES[name]
    nc = await nats.connect(suite.nats_url)
    bus = CommandBus(nc, namespace=suite.namespace, timeout=3)
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
                    case.service, case.command, case.payload(n, i), principal=CALLER
                )
            except (DomainError, nats.errors.Error):
                failed += 1
                await asyncio.sleep(0.02)
                continue
            acked.append(json.loads(result.data)["id"])

    process = await _spawn(suite, case.service)
    try:
        await _until_answering(bus, case.service)
        workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
        while len(acked) < 40:
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        acked_at_kill = len(acked)
        await asyncio.sleep(0.5)  # commands fail while nothing answers
        process = await _spawn(suite, case.service)
        await _until_answering(bus, case.service)
        while len(acked) < acked_at_kill + 40:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*workers)
        assert failed > 0, "the kill should have refused some commands"

        store = EventStore(nc.jetstream(), namespace=suite.namespace)
        store.register(case.stream)
        for entity_id in acked:
            state, _ = await load_state(store, case.aggregate, entity_id)
            assert getattr(state, f"{case.aggregate.name}_id") == entity_id, (
                f"{entity_id} acknowledged but not stored"
            )

        last = await store.last_sequence(case.stream.context)
        conn = await asyncpg.connect(suite.database_url)
        try:
            for _ in range(500):
                if await checkpoint(conn, case.stream.context) >= last:
                    break
                await asyncio.sleep(0.02)
            rows = await conn.fetch(f"SELECT id FROM {case.table}")  # noqa: S608 (constant)
        finally:
            await conn.close()
        assert set(acked) <= {r["id"] for r in rows}
        assert len(set(acked)) == len(acked)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()
        await nc.close()
