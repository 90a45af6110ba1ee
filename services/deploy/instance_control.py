"""One instance of a running release, stopped, started, restarted or removed on request.

The agent running the instance acts on a `service.instance_control_requested`
event. A stopped instance stays in its route, reported as `stopped`, so that
it can be started again: on a fresh port, health-checked first. The stable
address never sends requests to a stopped instance: it moves to another running
instance of the route, or answers 503 when none is left. A removed instance is
stopped and forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg

from libs.errors import DomainError
from services.deploy import instance_state
from services.deploy.health import free_port, health_url, wait_healthy
from services.deploy.instances import InstanceSpec
from services.deploy.routes import Route
from services.deploy.routing import Routing

log = structlog.get_logger("agent")


class _Request(msgspec.Struct):
    instance_id: str
    environment_id: str
    action: str


_decoder = msgspec.json.Decoder(_Request)


def requested(routing: Routing, msg: Msg) -> Coroutine[Any, Any, None] | None:
    """What to do about the event in `msg`: None unless this agent runs the instance."""
    service_id = msg.subject.rsplit(".", 1)[1]
    request = _decoder.decode(msg.data)
    key = f"{service_id}:{request.environment_id}"
    route = routing.routes.get(key)
    if route is None or request.instance_id not in route.instances:
        return None
    return act(routing, key, request.instance_id, request.action)


async def act(routing: Routing, key: str, instance_id: str, action: str) -> None:
    async with routing.lock(key):
        try:
            if action in ("stop", "restart", "remove"):
                await _stop(routing, key, instance_id)
            if action in ("start", "restart"):
                await _start(routing, key, instance_id)
            elif action == "remove":
                await _forget(routing, key, instance_id)
        except (OSError, nats.errors.Error, DomainError) as exc:
            log.warning(
                "instance_control_failed", instance=instance_id, action=action, error=str(exc)
            )


async def _stop(routing: Routing, key: str, instance_id: str) -> None:
    route = routing.routes.get(key)
    if route is None or instance_id not in route.instances:
        return
    if instance_id in route.stopped_instances:
        return
    port = route.ports[route.instances.index(instance_id)]
    instance = routing.supervisor.get(instance_id)
    started_at = instance.started_at if instance else time.time()
    restarts = instance.restarts if instance else 0
    stopped = msgspec.structs.replace(
        route, stopped_instances=[*route.stopped_instances, instance_id]
    )
    # Traffic first: to another running instance, or none (503); then drain.
    proxy = routing.proxies.get(key)
    if proxy is not None and proxy.upstream == port:
        proxy.set_upstream(stopped.serving_port())
        await proxy.drain(port, timeout=routing.settings.drain_seconds)
    await routing.supervisor.stop(instance_id)
    routing.routes[key] = stopped
    routing.save_routes()
    await _report_stopped(routing, stopped, key, instance_id, port, started_at, restarts)
    log.info("instance_stopped", route=key, instance=instance_id)


async def _start(routing: Routing, key: str, instance_id: str) -> None:
    route = routing.routes.get(key)
    if route is None or instance_id not in route.stopped_instances or not route.argv:
        return  # running already, or gone
    env = await routing.deploy.service_env(route.service_id)
    port = free_port()
    routing.note_instance(instance_id, key)
    await routing.supervisor.start(
        InstanceSpec(
            instance_id=instance_id,
            release_id=route.release_id or "",
            argv=tuple(route.argv),
            cwd=Path(route.cwd),
            port=port,
            env=route.instance_env(env, port),
        )
    )
    url = health_url(port, route.health_check_path)
    if not await wait_healthy(url, timeout=routing.settings.health_timeout_seconds):
        await routing.supervisor.stop(instance_id)
        log.warning("instance_start_unhealthy", route=key, instance=instance_id)
        return  # it stays stopped
    ports = list(route.ports)
    ports[route.instances.index(instance_id)] = port
    started = msgspec.structs.replace(
        route,
        ports=ports,
        stopped_instances=[i for i in route.stopped_instances if i != instance_id],
        stopped=False,
    )
    routing.routes[key] = started
    routing.save_routes()
    proxy = await routing.proxies.ensure(key, route.listen_port)
    if proxy.upstream is None:
        proxy.set_upstream(port)
    await routing.report_instances()
    log.info("instance_started", route=key, instance=instance_id, port=port)


async def _forget(routing: Routing, key: str, instance_id: str) -> None:
    route = routing.routes.get(key)
    if route is None or instance_id not in route.instances:
        return
    index = route.instances.index(instance_id)
    instances = [i for i in route.instances if i != instance_id]
    routing.routes[key] = msgspec.structs.replace(
        route,
        instances=instances,
        ports=[p for n, p in enumerate(route.ports) if n != index],
        stopped_instances=[i for i in route.stopped_instances if i != instance_id],
        # Nothing left: a stopped service, which a start brings back.
        stopped=route.stopped or not instances,
    )
    routing.save_routes()
    if routing.reports is not None:
        service_id, environment_id = key.split(":", 1)
        await instance_state.remove(routing.reports, f"{service_id}.{environment_id}.{instance_id}")
    log.info("instance_removed", route=key, instance=instance_id)


async def _report_stopped(
    routing: Routing,
    route: Route,
    key: str,
    instance_id: str,
    port: int,
    started_at: float,
    restarts: int,
) -> None:
    # Published once: the agent's periodic reports cover running instances only.
    if routing.reports is None:
        return
    service_id, environment_id = key.split(":", 1)
    await instance_state.publish(
        routing.reports,
        instance_state.InstanceReport(
            instance_id=instance_id,
            service_id=service_id,
            environment_id=environment_id,
            release_id=route.release_id or "",
            agent_id=routing.agent_id,
            pid=0,
            port=port,
            address=f"http://{routing.settings.proxy_host}:{route.listen_port}",
            status="stopped",
            started_at=datetime.fromtimestamp(started_at, UTC),
            uptime_seconds=0.0,
            restarts=restarts,
            cpu_percent=0.0,
            memory_rss=0,
            observed_at=datetime.now(UTC),
        ),
    )
