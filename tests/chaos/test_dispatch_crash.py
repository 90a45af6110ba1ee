"""SIGKILL the deploy service again and again during a burst of creates, cancels and
finishes: afterwards every deployment ends (or waits in the queue), and no slot is
held by a deployment that ended, so the organization can always deploy again."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import nats
import nats.errors

from libs.aggregate import load_state
from libs.errors import DomainError
from libs.eventstore import EventStore
from libs.messaging import CommandBus
from libs.testing import Suite
from services.deploy.events import STREAM
from services.deploy.handlers import DEPLOYMENTS
from services.deploy.handlers.aggregates import DISPATCH
from services.deploy.status import TERMINAL
from tests.chaos.test_service_crash import CALLER, _until_answering

KILLS = 6
MAX_DEPLOYMENTS = 80
SERVICES = 4
AGENT_STATUSES = ("dispatched", "initializing", "running")


async def _spawn(suite: Suite, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, **suite.environ(), "DEPLOYFORGE_LOG_FORMAT": "json"}
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.deploy.main", env=env, stdout=out, stderr=out
        )


def _problems(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join(line[:600] for line in lines if '"error"' in line or '"warning"' in line)[
        -8000:
    ]


async def _request(bus: CommandBus, command: str, payload: dict[str, Any], **kw: Any) -> Any:
    result = await bus.request("deploy", command, payload, **kw)
    return json.loads(result.data) if result.data else None


async def test_sigkills_mid_burst_leave_no_deployment_stranded_and_no_slot_held(
    suite: Suite, tmp_path: Path
) -> None:
    log = tmp_path / "deploy.log"
    rng = random.Random(7)
    nc = await nats.connect(suite.nats_url)
    bus = CommandBus(nc, namespace=suite.namespace, timeout=3)
    store = EventStore(nc.jetstream(), namespace=suite.namespace)
    store.register(STREAM)
    process = await _spawn(suite, log)
    created: list[str] = []
    stop = asyncio.Event()
    refused = 0

    async def status(deployment_id: str) -> str:
        state, _ = await load_state(store, DEPLOYMENTS, deployment_id)
        return state.status

    async def worker(env: str, services: list[str]) -> None:
        nonlocal refused
        while not stop.is_set():
            roll = rng.random()
            try:
                if (roll < 0.5 and len(created) < MAX_DEPLOYMENTS) or not created:
                    made = await _request(
                        bus,
                        "create_deployment",
                        {"service_id": rng.choice(services), "environment_id": env},
                        principal=CALLER,
                    )
                    created.append(made["id"])
                elif roll < 0.75:
                    await _request(
                        bus,
                        "cancel_deployment",
                        {"deployment_id": rng.choice(created)},
                        principal=CALLER,
                    )
                else:  # an agent finishing what it was given
                    chosen = rng.choice(created)
                    if await status(chosen) in AGENT_STATUSES:
                        await _request(
                            bus,
                            "finish_deployment",
                            {"deployment_id": chosen, "status": rng.choice(["success", "failure"])},
                        )
            except (DomainError, nats.errors.Error):
                refused += 1  # refused (conflict) or nobody answering: the kill
                await asyncio.sleep(0.01)

    try:
        await _until_answering(bus, "deploy")
        env = (await _request(bus, "create_environment", {"name": "chaos"}, principal=CALLER))["id"]
        project = (await _request(bus, "create_project", {"name": "chaos"}, principal=CALLER))["id"]
        services = [
            (
                await _request(
                    bus,
                    "create_service",
                    {
                        "project_id": project,
                        "name": f"svc{n}",
                        "repository_url": "https://example.com/r.git",
                        "run_command": ["true"],
                    },
                    principal=CALLER,
                )
            )["id"]
            for n in range(SERVICES)
        ]
        workers = [asyncio.create_task(worker(env, services)) for _ in range(6)]
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await asyncio.sleep(0.2)
            process = await _spawn(suite, log)
            await _until_answering(bus, "deploy")
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)
        assert len(created) > 30 and refused > 0

        # Every deployment the stream holds: a create acknowledged by the store whose
        # reply the kill cut off is one too (an agent would run it all the same).
        info = await store.js.stream_info(
            store.stream_name(STREAM.context), subjects_filter=store.subject("deployment", "*")
        )
        stored = [subject.rsplit(".", 1)[1] for subject in info.state.subjects or {}]
        assert set(created) <= set(stored)
        created = stored

        # Agents keep finishing what is handed to them; the queue drains.
        ended: dict[str, str] = {}
        for _ in range(240):
            for deployment_id in created:
                if deployment_id in ended:
                    continue
                now = await status(deployment_id)
                if now in TERMINAL:
                    ended[deployment_id] = now
                elif now in AGENT_STATUSES:
                    try:
                        await _request(bus, "finish_deployment", {"deployment_id": deployment_id})
                    except DomainError:
                        pass
            if len(ended) == len(created):
                break
            await asyncio.sleep(0.25)
        stranded = {i: await status(i) for i in created if i not in ended}
        assert stranded == {}, f"never ended: {stranded}\n{_problems(log)}"
        # The dispatch process gives back what ended; a step cut short by a kill is
        # handed out again after the consumer's ack wait (30 s).
        for _ in range(400):
            queue, _ = await load_state(store, DISPATCH, "org_chaos")
            if not queue.running and not queue.queue:
                break
            await asyncio.sleep(0.25)
        if queue.running:
            held = next(iter(queue.running))
            mine = await store.load("deployment", held, DEPLOYMENTS.codec)
            slots = await store.load("dispatch", "org_chaos", DISPATCH.codec)
            history = [(r.seq, r.meta.event_type) for r in mine.events] + [
                (r.seq, r.meta.event_type)
                for r in slots.events
                if getattr(r.event, "deployment_id", None) == held
            ]
            steps = [line[:300] for line in log.read_text().splitlines() if held in line]
            raise AssertionError(f"{held} ended but holds a slot: {sorted(history)}\n{steps}")
        assert queue.queue == ()

        # And the organization still deploys.
        made = await _request(
            bus,
            "create_deployment",
            {"service_id": services[0], "environment_id": env},
            principal=CALLER,
        )
        for _ in range(100):
            if await status(made["id"]) == "dispatched":
                break
            await asyncio.sleep(0.05)
        assert await status(made["id"]) == "dispatched"
    finally:
        stop.set()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()
        await nc.close()
