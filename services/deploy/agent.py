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
import json
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from libs.errors import DomainError
from libs.events import H_EVENT_TYPE
from libs.ids import new_id
from libs.lifecycle import run_until_signalled
from libs.messaging import CommandBus, connect_nats
from libs.settings import CoreSettings, load_settings
from services.deploy import instance_control, instance_state, jobs, logs, manifest
from services.deploy.commands import JobSpec
from services.deploy.control_position import ControlPosition
from services.deploy.events import PipelineStepSpec
from services.deploy.health import check as health_check
from services.deploy.health import free_port, health_url, wait_healthy
from services.deploy.instances import InstanceSpec, InstanceSupervisor
from services.deploy.proxy import ProxyTable
from services.deploy.runner import StepCancelled, StepTimedOut, reap_recorded_groups, run_step
from services.deploy.source import CheckoutFailed, checkout

log = structlog.get_logger("agent")


class AgentSettings(CoreSettings, frozen=True, kw_only=True):
    agent_id: str = ""
    work_dir: str = ".deployforge/agent"
    # Where the stable addresses listen.
    proxy_host: str = "127.0.0.1"
    keep_releases: int = 3
    build_timeout_seconds: float = 900.0
    health_timeout_seconds: float = 60.0
    # How long the old release keeps answering requests already sent to it.
    drain_seconds: float = 5.0
    concurrency: int = 4
    # Releases keep serving when the agent stops, for the next agent to adopt.
    # Off (tests, throwaway agents): stopping the agent stops its releases.
    detach_on_stop: bool = True
    # Where a deployment's scripts reach the API with their deployment token.
    api_url: str = "http://127.0.0.1:8080"


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


class Route(msgspec.Struct, kw_only=True):
    """A service in an environment on this agent: its stable port and live release."""

    listen_port: int
    release_id: str | None = None
    instances: list[str] = []
    ports: list[int] = []
    # What the instances run, to adopt or restart them after an agent restart.
    # No env: it may hold secrets, and is asked for again then.
    service_id: str = ""
    argv: list[str] = []
    cwd: str = ""
    health_check_path: str = "/"
    replicas: int = 1
    deployment_id: str = ""
    # Non-secret defaults from the release's deployforge.yml (secrets are asked for).
    env_defaults: dict[str, str] = {}
    # Stopped on request: the release is kept, the address answers 503.
    stopped: bool = False
    # Instances (of `instances`) stopped one by one on request: kept, for a start.
    stopped_instances: list[str] = []

    def running(self) -> list[tuple[str, int]]:
        """The instances that should be running, with their ports."""
        pairs = zip(self.instances, self.ports, strict=True)
        return [(i, port) for i, port in pairs if i not in self.stopped_instances]

    def serving_port(self) -> int | None:
        """Where the stable address sends requests: the first running instance."""
        running = self.running()
        return running[0][1] if running else None

    def instance_env(self, service_env: dict[str, str], port: int) -> dict[str, str]:
        """An instance's environment when started again (a restart, or after adoption)."""
        return {
            **_base_env(Path(self.cwd)),
            **self.env_defaults,
            **service_env,
            "PORT": str(port),
            "DEPLOYFORGE_DEPLOYMENT_ID": self.deployment_id,
        }


_spec_decoder = msgspec.json.Decoder(JobSpec)


def _base_env(release: Path) -> dict[str, str]:
    # A build or an instance gets nothing of the agent's own environment but these.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(release),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    return env


class Agent:
    def __init__(self, settings: AgentSettings, nc: NATS) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.namespace = settings.namespace
        self.agent_id = settings.agent_id or f"{socket.gethostname()}-{os.getpid()}"
        self.bus = CommandBus(nc, namespace=settings.namespace, timeout=30)
        self.work = Path(settings.work_dir).absolute()
        self.proxies = ProxyTable(settings.proxy_host)
        self.supervisor = InstanceSupervisor(self.work / "instances", on_log=self._instance_line)
        self._routes_path = self.work / "routes.json"
        self.routes: dict[str, Route] = {}
        self._route_locks: dict[str, asyncio.Lock] = {}
        self._leases: KeyValue | None = None
        self.reports: KeyValue | None = None
        # Which service, in which environment, each instance runs, for its log lines.
        self.service_of: dict[str, str] = {}
        self.environment_of: dict[str, str] = {}

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True, mode=0o700)
        reaped = reap_recorded_groups(self.work / "steps")
        if reaped:
            log.warning("reaped_leftover_steps", process_groups=reaped)
        self._leases = await jobs.ensure(self.js, self.namespace, self.settings.stream_replicas)
        await logs.ensure_stream(self.js, self.namespace, self.settings.stream_replicas)
        self.reports = await instance_state.bucket(
            self.js, self.namespace, self.settings.stream_replicas
        )
        await self._restore_routes()
        stream = jobs.stream_name(self.namespace)
        with contextlib.suppress(Exception):  # already there, made by another agent
            await self.js.add_consumer(
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
        running: set[asyncio.Task[None]] = {asyncio.create_task(self._report_forever(stop))}
        controls = await self._follow_controls(running)
        log.info("agent_ready", agent_id=self.agent_id, work_dir=str(self.work))
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                await slots.acquire()
                try:
                    msgs = await sub.fetch(1, timeout=1.0)
                except nats.errors.TimeoutError:
                    msgs = []
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
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self.settings.detach_on_stop:
                await self.supervisor.detach()
            else:
                await self.supervisor.stop_all()
            await self.proxies.close()

    # --- one job -----------------------------------------------------------------------

    async def _job(self, msg: Msg) -> None:
        deployment_id = msg.data.decode()
        assert self._leases is not None
        await self._leases.put(deployment_id, self.agent_id.encode())
        renewing = asyncio.create_task(self._renew(deployment_id))
        try:
            try:
                result = await self.bus.request(
                    "deploy",
                    "agent_start",
                    {"deployment_id": deployment_id, "agent_id": self.agent_id},
                )
            except DomainError as exc:
                # Cancelled while queued, or another agent has it: nothing to run.
                log.info("job_skipped", deployment_id=deployment_id, reason=exc.message)
                await msg.ack()
                return
            await msg.ack()
            spec = _spec_decoder.decode(result.data)
            try:
                await self._deploy(spec)
            except Exception as exc:
                # A bug of ours must not leave the deployment "running" until the
                # watchdog notices: fail it now, with the reason.
                log.exception("deployment_crashed", deployment_id=deployment_id)
                await self._finish(
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
            outcome = await self._steps(spec, writer, cancel)
        except StepCancelled:
            await writer.write("deployment cancelled: stopped the running step", _now())
            return
        except StepFailed as failure:
            await writer.write(f"{failure.step} failed: {failure.reason}", _now())
            await self._report(
                spec.deployment_id, failure.step, "failure", error_message=failure.reason
            )
            await self._finish(
                spec.deployment_id, succeeded=False, reason=failure.reason, step=failure.step
            )
            return
        finally:
            await watcher.unsubscribe()
        commit, release_id, address = outcome
        await self._finish(
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

    async def _steps(
        self, spec: JobSpec, writer: logs.LogWriter, cancel: asyncio.Event
    ) -> tuple[str | None, str, str]:
        route_key = f"{spec.service_id}:{spec.environment_id}"
        releases = self.work / "releases" / spec.service_id
        releases.mkdir(parents=True, exist_ok=True)

        async def step(name: str, work: Callable[[], Awaitable[None]]) -> None:
            if cancel.is_set():
                raise StepCancelled(name)
            writer.step = name
            await self._report(spec.deployment_id, name, "running")
            begun = time.monotonic()
            await work()
            await self._report(
                spec.deployment_id, name, "success", message=f"{time.monotonic() - begun:.2f}s"
            )

        async def line(text: str) -> None:
            await writer.write(text, _now())

        commit: str | None = None
        if spec.reuse_release_id is not None:
            release_id = spec.reuse_release_id
            source = releases / release_id

            async def reuse() -> None:
                nonlocal spec
                if not source.is_dir():
                    raise StepFailed("fetch", f"release {release_id} is no longer kept")
                await line(f"reusing release {release_id}: no fetch, no build")
                spec = await _with_manifest(spec, source, line)

            await step("fetch", reuse)
        else:
            release_id = new_id("rel")
            source = releases / release_id

            async def fetch() -> None:
                nonlocal commit, spec
                try:
                    commit = await checkout(
                        spec.repository_url,
                        spec.ref,
                        source,
                        on_line=line,
                        cancel=cancel,
                        timeout=300,
                    )
                except CheckoutFailed as exc:
                    raise StepFailed("fetch", str(exc)) from None
                await line(f"checked out {spec.ref} at {commit}")
                (source / ".deployforge-commit").write_text(commit)
                spec = await _with_manifest(spec, source, line)

            await step("fetch", fetch)

            async def build() -> None:
                if not spec.build_command:
                    await line("no build command")
                    return
                env = {**_base_env(source), **spec.env, **self._script_env(spec)}
                try:
                    code = await run_step(
                        spec.build_command,
                        cwd=source,
                        env=env,
                        on_line=line,
                        cancel=cancel,
                        timeout=self.settings.build_timeout_seconds,
                        pgid_file=self.work / "steps" / f"{spec.deployment_id}.pgid",
                    )
                except StepTimedOut:
                    raise StepFailed("build", "the build timed out") from None
                if code != 0:
                    raise StepFailed("build", f"the build command exited with {code}")

            await step("build", build)
            for pipeline_step in spec.pipeline_steps:
                await step(
                    pipeline_step.name,
                    self._pipeline_step(spec, pipeline_step, source, line, cancel),
                )
        if commit is None and (source / ".deployforge-commit").exists():
            commit = (source / ".deployforge-commit").read_text().strip()

        async with self.lock(route_key):
            return await self._release(spec, route_key, release_id, source, step, line, commit)

    async def _release(
        self,
        spec: JobSpec,
        route_key: str,
        release_id: str,
        source: Path,
        step: Callable[[str, Callable[[], Awaitable[None]]], Awaitable[None]],
        line: Callable[[str], Awaitable[None]],
        commit: str | None,
    ) -> tuple[str | None, str, str]:
        route = self.routes.get(route_key) or Route(listen_port=free_port())
        old_ids, old_ports = list(route.instances), list(route.ports)
        new_ids: list[str] = []
        new_ports: list[int] = []
        if spec.strategy == "recreate" and old_ids:
            for instance_id in old_ids:
                await self.supervisor.stop(instance_id)
            old_ids, old_ports = [], []

        async def start() -> None:
            for n in range(spec.replicas):
                port = (
                    spec.port
                    if spec.port and spec.replicas == 1 and not old_ports
                    else (free_port())
                )
                instance_id = f"{spec.deployment_id}-{n}"
                env = {
                    **_base_env(source),
                    **spec.env,
                    "PORT": str(port),
                    "DEPLOYFORGE_DEPLOYMENT_ID": spec.deployment_id,
                }
                self.note_instance(instance_id, route_key)
                await self.supervisor.start(
                    InstanceSpec(
                        instance_id=instance_id,
                        release_id=release_id,
                        argv=tuple(spec.run_command),
                        cwd=source,
                        port=port,
                        env=env,
                    )
                )
                new_ids.append(instance_id)
                new_ports.append(port)
                await line(f"started {instance_id} on port {port}")

        async def health() -> None:
            for port in new_ports:
                url = health_url(port, spec.health_check_path)
                if not await wait_healthy(
                    url, timeout=self.settings.health_timeout_seconds, on_line=line
                ):
                    raise StepFailed("health_check", f"{url} did not answer in time")
            await line("healthy")

        async def switch() -> None:
            proxy = await self.proxies.ensure(route_key, route.listen_port)
            proxy.set_upstream(new_ports[0])
            await line(
                f"http://{self.settings.proxy_host}:{route.listen_port} now serves {release_id}"
            )

        async def cleanup() -> None:
            proxy = self.proxies.get(route_key)
            for port in old_ports:
                if proxy is not None:
                    await proxy.drain(port, timeout=self.settings.drain_seconds)
            await self._stop_instances(route_key, old_ids)
            if old_ids:
                await line(f"stopped {', '.join(old_ids)}")
            self._prune(source.parent, keep={release_id})

        try:
            await step("start", start)
            await step("health_check", health)
            await step("switch", switch)
        except BaseException:
            # The new release never took traffic: stop it, the old one keeps serving.
            for instance_id in new_ids:
                await self.supervisor.stop(instance_id)
            raise
        self.routes[route_key] = Route(
            listen_port=route.listen_port,
            release_id=release_id,
            instances=new_ids,
            ports=new_ports,
            service_id=spec.service_id,
            argv=list(spec.run_command),
            cwd=str(source),
            health_check_path=spec.health_check_path,
            replicas=spec.replicas,
            deployment_id=spec.deployment_id,
            env_defaults=spec.manifest_env,
        )
        self.save_routes()
        await self.report_instances()
        await step("cleanup", cleanup)
        return commit, release_id, f"http://{self.settings.proxy_host}:{route.listen_port}"

    def _pipeline_step(
        self,
        spec: JobSpec,
        pipeline_step: PipelineStepSpec,
        source: Path,
        line: Callable[[str], Awaitable[None]],
        cancel: asyncio.Event,
    ) -> Callable[[], Awaitable[None]]:
        """A pipeline's step: its command in the checkout, with the run's parameters."""

        async def run() -> None:
            parameters = {f"PARAM_{k.upper()}": v for k, v in spec.parameters.items()}
            env = {**_base_env(source), **spec.env, **self._script_env(spec), **parameters}
            try:
                code = await run_step(
                    pipeline_step.command,
                    cwd=source,
                    env=env,
                    on_line=line,
                    cancel=cancel,
                    timeout=self.settings.build_timeout_seconds,
                    pgid_file=self.work / "steps" / f"{spec.deployment_id}.pgid",
                )
            except StepTimedOut:
                raise StepFailed(pipeline_step.name, "the step timed out") from None
            if code != 0:
                raise StepFailed(pipeline_step.name, f"{pipeline_step.name} exited with {code}")

        return run

    def _script_env(self, spec: JobSpec) -> dict[str, str]:
        """What a build script needs to report its own steps (fastDeploy)."""
        env = {
            "DEPLOYFORGE_DEPLOYMENT_ID": spec.deployment_id,
            "DEPLOYFORGE_API_URL": self.settings.api_url,
        }
        if spec.deployment_token:
            env["DEPLOYFORGE_DEPLOYMENT_TOKEN"] = spec.deployment_token
        return env

    def _prune(self, releases: Path, keep: set[str]) -> None:
        """Keep the newest `keep_releases` releases of a service, for instant rollbacks."""
        live = {r.release_id for r in self.routes.values() if r.release_id}
        dirs = sorted(
            (p for p in releases.iterdir() if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in dirs[self.settings.keep_releases :]:
            if old.name not in keep | live:
                shutil.rmtree(old, ignore_errors=True)

    # --- start, stop, restart of a running release ------------------------------------

    async def _follow_controls(
        self, running: set[asyncio.Task[None]]
    ) -> JetStreamContext.PushSubscription:
        prefix = f"{self.namespace}." if self.namespace else ""

        position = ControlPosition(self.work / "controls.json")

        def track(seq: int, actions: list[Coroutine[Any, Any, None]]) -> None:
            """Run the actions; the position moves past `seq` once they are done."""
            if not actions:
                position.advance(seq)
                return

            async def all_of() -> None:
                await asyncio.gather(*actions)
                position.advance(seq)

            task = asyncio.create_task(all_of())
            running.add(task)
            task.add_done_callback(running.discard)

        async def on_event(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            event_type = (msg.headers or {}).get(H_EVENT_TYPE)
            if event_type == "service.instance_control_requested":
                acting = instance_control.requested(self, msg)
                track(seq, [acting] if acting is not None else [])
                return
            if event_type != "service.control_requested":
                track(seq, [])
                return
            service_id = msg.subject.rsplit(".", 1)[1]
            request = _control_decoder.decode(msg.data)
            actions = []
            for key in list(self.routes):
                service, environment = key.split(":", 1)
                if service == service_id and request.environment_id in (None, environment):
                    actions.append(self._control(key, request.action))
            track(seq, actions)

        # From where this agent left off (requests made while it was away are
        # carried out now, in order), or from now on for a new agent.
        resume = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=position.position + 1
        )
        sub = await self.js.subscribe(
            f"{prefix}service.*",
            ordered_consumer=True,
            cb=on_event,
            config=resume if position.position else None,
            deliver_policy=None if position.position else DeliverPolicy.NEW,
        )
        if not position.position:
            # A new agent: it owes nothing from before now, but from now on it does.
            info = await sub.consumer_info()
            position.advance(info.delivered.stream_seq or 0 if info.delivered else 0)
        return sub

    async def _control(self, key: str, action: str) -> None:
        async with self.lock(key):
            route = self.routes[key]  # as it is now, not as when the event arrived
            try:
                if action == "stop":
                    await self._stop_route(key, route)
                else:
                    await self._start_route(key, route, replace=action == "restart")
            except (OSError, nats.errors.Error, DomainError) as exc:
                log.warning("service_control_failed", route=key, action=action, error=str(exc))

    async def _stop_route(self, key: str, route: Route) -> None:
        proxy = self.proxies.get(key)
        if proxy is not None:
            proxy.set_upstream(None)
        await self._stop_instances(key, route.instances)
        self.routes[key] = msgspec.structs.replace(
            route, instances=[], ports=[], stopped=True, stopped_instances=[]
        )
        self.save_routes()
        log.info("service_stopped", route=key)

    async def _start_route(self, key: str, route: Route, *, replace: bool) -> None:
        """Start the route's release on fresh ports and move traffic to it; with
        `replace`, the instances it had (a restart) are drained and stopped after."""
        if not route.argv or (route.running() and not replace):
            return
        env = await self.service_env(route.service_id)
        cwd = Path(route.cwd)
        new_ids: list[str] = []
        new_ports: list[int] = []
        for n in range(route.replicas):
            port = free_port()
            instance_id = f"{route.release_id}-{int(time.time() * 1000)}-{n}"
            self.note_instance(instance_id, key)
            await self.supervisor.start(
                InstanceSpec(
                    instance_id=instance_id,
                    release_id=route.release_id or "",
                    argv=tuple(route.argv),
                    cwd=cwd,
                    port=port,
                    env=route.instance_env(env, port),
                )
            )
            new_ids.append(instance_id)
            new_ports.append(port)
        for port in new_ports:
            url = health_url(port, route.health_check_path)
            if not await wait_healthy(url, timeout=self.settings.health_timeout_seconds):
                await self._stop_instances(key, new_ids)
                log.warning("service_start_unhealthy", route=key)
                return
        proxy = await self.proxies.ensure(key, route.listen_port)
        proxy.set_upstream(new_ports[0])
        old_ids, old_ports = route.instances, route.ports
        self.routes[key] = msgspec.structs.replace(
            route, instances=new_ids, ports=new_ports, stopped=False, stopped_instances=[]
        )
        self.save_routes()
        for port in old_ports:
            await proxy.drain(port, timeout=self.settings.drain_seconds)
        await self._stop_instances(key, old_ids)
        await self.report_instances()
        log.info("service_started", route=key, instances=new_ids)

    async def _stop_instances(self, key: str, instance_ids: list[str]) -> None:
        service_id, environment_id = key.split(":", 1)
        for instance_id in instance_ids:
            await self.supervisor.stop(instance_id)
            if self.reports is not None:
                await instance_state.remove(
                    self.reports, f"{service_id}.{environment_id}.{instance_id}"
                )

    async def _instance_line(self, instance_id: str, line: str) -> None:
        """A running instance's output goes to its service's log (`logs.<service_id>`),
        from its first line on: before the release takes traffic too."""
        service_id = self.service_of.get(instance_id)
        if service_id is None:
            return
        writer = logs.LogWriter(self.js, self.namespace, service_id)
        writer.step = instance_id
        writer.environment_id = self.environment_of.get(instance_id)
        with contextlib.suppress(nats.errors.Error):
            await writer.write(line, _now())

    async def _report_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.report_instances()
            except nats.errors.Error as exc:
                log.warning("instance_report_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=instance_state.REPORT_SECONDS)

    async def report_instances(self) -> None:
        """Publish the state of every instance this agent runs (for the API and drift)."""
        if self.reports is None:
            return
        now = _now()
        probes: dict[str, Awaitable[tuple[bool, int | None, float, str | None]]] = {}
        async with aiohttp.ClientSession() as http:
            for route in list(self.routes.values()):
                for instance_id in route.instances:
                    instance = self.supervisor.get(instance_id)
                    if instance is not None and instance.running:
                        url = health_url(instance.port, route.health_check_path)
                        probes[instance_id] = health_check(http, url)
            results = dict(zip(probes, await asyncio.gather(*probes.values()), strict=True))
        for route_key, route in list(self.routes.items()):
            service_id, environment_id = route_key.split(":", 1)
            address = f"http://{self.settings.proxy_host}:{route.listen_port}"
            for instance_id in route.instances:
                instance = self.supervisor.get(instance_id)
                if instance is None:
                    continue
                stats = instance.stats()
                probed = results.get(instance_id)
                check = (
                    instance_state.HealthCheck(
                        ok=probed[0],
                        status_code=probed[1],
                        latency_ms=probed[2],
                        error=probed[3],
                        checked_at=now,
                    )
                    if probed is not None
                    else None
                )
                await instance_state.publish(
                    self.reports,
                    instance_state.InstanceReport(
                        instance_id=instance_id,
                        service_id=service_id,
                        environment_id=environment_id,
                        release_id=route.release_id or "",
                        agent_id=self.agent_id,
                        pid=instance.pid,
                        port=instance.port,
                        address=address,
                        status="running" if instance.running else "restarting",
                        started_at=datetime.fromtimestamp(instance.started_at, UTC),
                        uptime_seconds=round(instance.uptime(), 3),
                        restarts=instance.restarts,
                        cpu_percent=stats.cpu_percent,
                        memory_rss=stats.memory_rss,
                        observed_at=now,
                        check=check,
                    ),
                )

    def note_instance(self, instance_id: str, route_key: str) -> None:
        """Which service and environment an instance's log lines belong to."""
        service_id, _, environment_id = route_key.partition(":")
        self.service_of[instance_id] = service_id
        self.environment_of[instance_id] = environment_id

    def lock(self, route_key: str) -> asyncio.Lock:
        return self._route_locks.setdefault(route_key, asyncio.Lock())

    # --- the stable addresses survive an agent restart -----------------------------------

    def save_routes(self) -> None:
        tmp = self._routes_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(msgspec.to_builtins(self.routes)))
        tmp.replace(self._routes_path)

    async def _restore_routes(self) -> None:
        if not self._routes_path.exists():
            return
        raw = json.loads(self._routes_path.read_text())
        self.routes = msgspec.convert(raw, dict[str, Route])
        specs: list[InstanceSpec] = []
        for key, route in self.routes.items():
            if not route.instances or not route.argv:
                continue
            env = await self.service_env(route.service_id)
            for instance_id, port in route.running():
                self.note_instance(instance_id, key)
                specs.append(
                    InstanceSpec(
                        instance_id=instance_id,
                        release_id=route.release_id or "",
                        argv=tuple(route.argv),
                        cwd=Path(route.cwd),
                        port=port,
                        env=route.instance_env(env, port),
                    )
                )
        # Instances still running are adopted as they are (same pid); dead ones restart.
        adopted = await self.supervisor.adopt(specs)
        if adopted:
            log.info("instances_adopted", pids=[i.pid for i in adopted])
        for key, route in list(self.routes.items()):
            proxy = await self.proxies.ensure(key, route.listen_port)
            if route.serving_port() is not None:
                proxy.set_upstream(route.serving_port())

    async def service_env(self, service_id: str) -> dict[str, str]:
        try:
            result = await self.bus.request("deploy", "service_env", {"service_id": service_id})
        except DomainError as exc:
            log.warning("service_env_unavailable", service_id=service_id, error=exc.message)
            return {}
        env: dict[str, str] = msgspec.json.decode(result.data, type=dict[str, str])
        return env

    # --- talking to the deploy service ---------------------------------------------------

    async def _report(
        self,
        deployment_id: str,
        name: str,
        state: str,
        *,
        message: str = "",
        error_message: str = "",
    ) -> None:
        with contextlib.suppress(DomainError):
            await self.bus.request(
                "deploy",
                "report_step",
                {
                    "deployment_id": deployment_id,
                    "name": name,
                    "state": state,
                    "message": message[:4000],
                    "error_message": error_message[:4000],
                },
            )

    async def _finish(
        self,
        deployment_id: str,
        *,
        succeeded: bool,
        reason: str = "",
        step: str | None = None,
        commit_hash: str | None = None,
        release_id: str | None = None,
        address: str | None = None,
    ) -> None:
        try:
            await self.bus.request(
                "deploy",
                "agent_finish",
                {
                    "deployment_id": deployment_id,
                    "succeeded": succeeded,
                    "reason": reason[:4000],
                    "step": step,
                    "commit_hash": commit_hash,
                    "release_id": release_id,
                    "address": address,
                },
            )
        except DomainError as exc:
            # Cancelled meanwhile: the deployment already ended.
            log.info("finish_refused", deployment_id=deployment_id, reason=exc.message)


async def _with_manifest(
    spec: JobSpec, source: Path, line: Callable[[str], Awaitable[None]]
) -> JobSpec:
    """The job as the checkout's deployforge.yml says, if it has one."""
    try:
        found = manifest.load(source)
    except manifest.ManifestInvalid as exc:
        raise StepFailed("fetch", str(exc)) from None
    if found is None:
        return spec
    name, declared = found
    await line(f"using {name}")
    return manifest.apply(spec, declared)


class _ControlRequest(msgspec.Struct):
    action: str
    environment_id: str | None = None


_control_decoder = msgspec.json.Decoder(_ControlRequest)


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
