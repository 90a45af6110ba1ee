"""The routes an agent serves: their instances, the stable addresses in front, their reports.

A route's stable address (a proxy) sends requests to one running instance of
its live release. Routes are saved on every change; an agent that starts finds
the routes of the one before it, adopts the instances still running (same pid)
and restarts the dead ones. Every instance's state is published for the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import msgspec
import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from services.deploy import instance_state, logs
from services.deploy.agent_settings import AgentSettings
from services.deploy.deploy_client import DeployClient
from services.deploy.health import check as health_check
from services.deploy.health import health_url
from services.deploy.instances import InstanceSpec
from services.deploy.proxy import ProxyTable
from services.deploy.routes import Route
from services.deploy.supervisor import InstanceSupervisor

log = structlog.get_logger("agent")


class Routing:
    def __init__(
        self,
        settings: AgentSettings,
        js: JetStreamContext,
        deploy: DeployClient,
        *,
        agent_id: str,
        work: Path,
    ) -> None:
        self.settings = settings
        self.js = js
        self.namespace = settings.namespace
        self.deploy = deploy
        self.agent_id = agent_id
        self.work = work
        self.proxies = ProxyTable(settings.proxy_host)
        self.supervisor = InstanceSupervisor(work / "instances", on_log=self._instance_line)
        self._routes_path = work / "routes.json"
        self.routes: dict[str, Route] = {}
        self._route_locks: dict[str, asyncio.Lock] = {}
        self.reports: KeyValue | None = None
        # Which service, in which environment, each instance runs, for its log lines.
        self.service_of: dict[str, str] = {}
        self.environment_of: dict[str, str] = {}

    async def open(self) -> None:
        """Open the reports bucket, then take over the routes a previous agent left."""
        self.reports = await instance_state.bucket(
            self.js, self.namespace, self.settings.stream_replicas
        )
        await self._restore_routes()

    async def close(self, *, detach: bool) -> None:
        """Leave the instances running for the next agent (`detach`), or stop them."""
        if detach:
            await self.supervisor.detach()
        else:
            await self.supervisor.stop_all()
        await self.proxies.close()

    def lock(self, route_key: str) -> asyncio.Lock:
        return self._route_locks.setdefault(route_key, asyncio.Lock())

    def note_instance(self, instance_id: str, route_key: str) -> None:
        """Which service and environment an instance's log lines belong to."""
        service_id, _, environment_id = route_key.partition(":")
        self.service_of[instance_id] = service_id
        self.environment_of[instance_id] = environment_id

    async def stop_instances(self, key: str, instance_ids: list[str]) -> None:
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
            await writer.write(line, datetime.now(UTC))

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
            env = await self.deploy.service_env(route.service_id)
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

    # --- what the API shows of each instance -------------------------------------------

    async def report_forever(self, stop: asyncio.Event) -> None:
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
        now = datetime.now(UTC)
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
