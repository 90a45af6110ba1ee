"""`deployforge agent`: runs deployments for real, on the machine it runs on.

Agents share the jobs work queue (services/deploy/jobs.py). For each job an
agent takes a lease, asks the deploy service for the job's details, and runs
the steps: fetch the source with git at the ref, build, start the release's
instances with PORT and the service's env vars, wait for the health check,
move the stable address to the new release, stop the old one. Every line a
step prints goes to the deployment's log stream; each step is reported to the
deploy service, which records it as events. A rollback starts a release kept
from an earlier deployment instead of building one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from libs.consumers import ensure_durable, pull
from libs.errors import DomainError
from libs.events import H_EVENT_TYPE
from libs.lifecycle import run_until_signalled
from libs.messaging import CommandBus, connect_nats
from libs.settings import load_settings
from services.deploy import jobs, logs, observe, service_control
from services.deploy.agent_settings import AgentSettings
from services.deploy.commands import JobSpec
from services.deploy.deploy_client import DeployClient
from services.deploy.deployment_steps import DeploymentSteps, StepFailed
from services.deploy.routes import Route
from services.deploy.routing import Routing
from services.deploy.runner import StepCancelled, reap_recorded_groups

# Where these lived before the agent was split in modules; still importable from here.
__all__ = ["Agent", "AgentSettings", "Route", "StepFailed", "main", "run"]

log = structlog.get_logger("agent")

_spec_decoder = msgspec.json.Decoder(JobSpec)


class Agent:
    def __init__(self, settings: AgentSettings, nc: NATS) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.namespace = settings.namespace
        self.agent_id = settings.agent_id or f"{socket.gethostname()}-{os.getpid()}"
        self.deploy = DeployClient(CommandBus(nc, namespace=settings.namespace, timeout=30))
        self.work = Path(settings.work_dir).absolute()
        self.routing = Routing(
            settings, self.js, self.deploy, agent_id=self.agent_id, work=self.work
        )
        self.steps = DeploymentSteps(self.routing)
        self._leases: KeyValue | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True, mode=0o700)
        reaped = reap_recorded_groups(self.work / "steps")
        if reaped:
            log.warning("reaped_leftover_steps", process_groups=reaped)
        self._leases = await jobs.ensure(self.js, self.namespace, self.settings.stream_replicas)
        await logs.ensure_stream(self.js, self.namespace, self.settings.stream_replicas)
        await self.routing.open()
        stream = jobs.stream_name(self.namespace)
        # Every agent shares one consumer: the first creates it, the others find it.
        await ensure_durable(
            self.js,
            stream,
            ConsumerConfig(
                durable_name=jobs.AGENTS_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        sub = await self.js.pull_subscribe_bind(durable=jobs.AGENTS_CONSUMER, stream=stream)
        slots = asyncio.Semaphore(self.settings.concurrency)
        running: set[asyncio.Task[None]] = {asyncio.create_task(self.routing.report_forever(stop))}
        controls = await service_control.follow(self.routing, running)
        observing = await observe.answer(self.routing, self.nc)
        log.info("agent_ready", agent_id=self.agent_id, work_dir=str(self.work))
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                await slots.acquire()
                msgs = await pull(sub, 1, 1.0)
                if not msgs:  # also an expired pull request: no error, no messages
                    slots.release()
                    continue
                task = asyncio.create_task(self._job(msgs[0]))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            await sub.unsubscribe()
            await controls.unsubscribe()
            await observing.unsubscribe()
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await self.routing.close(detach=self.settings.detach_on_stop)

    # --- one job -----------------------------------------------------------------------

    async def _job(self, msg: Msg) -> None:
        deployment_id = msg.data.decode()
        assert self._leases is not None
        await self._leases.put(deployment_id, self.agent_id.encode())
        renewing = asyncio.create_task(self._renew(deployment_id))
        try:
            try:
                data = await self.deploy.agent_start(deployment_id, self.agent_id)
            except DomainError as exc:
                # Cancelled while queued, or another agent has it: nothing to run.
                log.info("job_skipped", deployment_id=deployment_id, reason=exc.message)
                await msg.ack()
                return
            await msg.ack()
            spec = _spec_decoder.decode(data)
            try:
                await self._deploy(spec)
            except Exception as exc:
                # A bug of ours must not leave the deployment "running" until the
                # watchdog notices: fail it now, with the reason.
                log.exception("deployment_crashed", deployment_id=deployment_id)
                await self.deploy.finish(
                    deployment_id,
                    succeeded=False,
                    reason=f"the agent failed: {type(exc).__name__}: {exc}",
                )
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            with contextlib.suppress(Exception):
                await self._leases.delete(deployment_id)

    async def _renew(self, deployment_id: str) -> None:
        assert self._leases is not None
        while True:
            await asyncio.sleep(jobs.RENEW_SECONDS)
            with contextlib.suppress(nats.errors.Error):
                await self._leases.put(deployment_id, self.agent_id.encode())

    async def _deploy(self, spec: JobSpec) -> None:
        writer = logs.LogWriter(self.js, self.namespace, spec.deployment_id)
        cancel = asyncio.Event()
        watcher = await self._watch_cancel(spec.deployment_id, cancel)
        started = time.monotonic()
        try:
            outcome = await self.steps.run(spec, writer, cancel)
        except StepCancelled:
            await writer.write("deployment cancelled: stopped the running step", _now())
            return
        except StepFailed as failure:
            await writer.write(f"{failure.step} failed: {failure.reason}", _now())
            await self.deploy.report_step(
                spec.deployment_id, failure.step, "failure", error_message=failure.reason
            )
            await self.deploy.finish(
                spec.deployment_id, succeeded=False, reason=failure.reason, step=failure.step
            )
            return
        finally:
            await watcher.unsubscribe()
        commit, release_id, address = outcome
        await self.deploy.finish(
            spec.deployment_id,
            succeeded=True,
            commit_hash=commit,
            release_id=release_id,
            address=address,
            reason=f"deployed in {time.monotonic() - started:.1f}s",
        )

    async def _watch_cancel(
        self, deployment_id: str, cancel: asyncio.Event
    ) -> JetStreamContext.PushSubscription:
        prefix = f"{self.namespace}." if self.namespace else ""

        async def on_event(msg: Msg) -> None:
            if (msg.headers or {}).get(H_EVENT_TYPE) == "deployment.cancelled":
                cancel.set()

        return await self.js.subscribe(
            f"{prefix}deployment.{deployment_id}",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=on_event,
        )


def _now() -> datetime:
    return datetime.now(UTC)


async def run(
    settings: AgentSettings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    nc = await connect_nats(settings, "agent")
    try:
        await Agent(settings, nc).run(stop, ready)
    finally:
        await nc.drain()


def main() -> None:
    run_until_signalled("agent", load_settings(AgentSettings), run)


if __name__ == "__main__":
    main()
