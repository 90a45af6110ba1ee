"""A service's running release, stopped, started or restarted on request.

The agent follows the `service.*` events from where it left off (its
ControlPosition) and acts on each `service.control_requested` for a route it
serves; `service.instance_control_requested` is left to instance_control. A
stopped route keeps its release, and its address answers 503; a start or a
restart runs the release on fresh ports, health-checked before it takes traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from libs.errors import DomainError
from libs.events import H_EVENT_TYPE
from services.deploy import instance_control
from services.deploy.control_position import ControlPosition
from services.deploy.health import free_port, health_url, wait_healthy
from services.deploy.instances import InstanceSpec
from services.deploy.routes import Route
from services.deploy.routing import Routing

log = structlog.get_logger("agent")


class _ControlRequest(msgspec.Struct):
    action: str
    environment_id: str | None = None


_control_decoder = msgspec.json.Decoder(_ControlRequest)


async def follow(
    routing: Routing, running: set[asyncio.Task[None]]
) -> JetStreamContext.PushSubscription:
    """Act on start, stop and restart requests; the tasks acting join `running`."""
    prefix = f"{routing.namespace}." if routing.namespace else ""

    position = ControlPosition(routing.work / "controls.json")

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
            acting = instance_control.requested(routing, msg)
            track(seq, [acting] if acting is not None else [])
            return
        if event_type != "service.control_requested":
            track(seq, [])
            return
        service_id = msg.subject.rsplit(".", 1)[1]
        request = _control_decoder.decode(msg.data)
        actions = []
        for key in list(routing.routes):
            service, environment = key.split(":", 1)
            if service == service_id and request.environment_id in (None, environment):
                actions.append(act(routing, key, request.action))
        track(seq, actions)

    # From where this agent left off (requests made while it was away are
    # carried out now, in order), or from now on for a new agent.
    resume = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=position.position + 1
    )
    sub = await routing.js.subscribe(
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


async def act(routing: Routing, key: str, action: str) -> None:
    async with routing.lock(key):
        route = routing.routes[key]  # as it is now, not as when the event arrived
        try:
            if action == "stop":
                await _stop(routing, key, route)
            else:
                await _start(routing, key, route, replace=action == "restart")
        except (OSError, nats.errors.Error, DomainError) as exc:
            log.warning("service_control_failed", route=key, action=action, error=str(exc))


async def _stop(routing: Routing, key: str, route: Route) -> None:
    proxy = routing.proxies.get(key)
    if proxy is not None:
        proxy.set_upstream(None)
    await routing.stop_instances(key, route.instances)
    routing.routes[key] = msgspec.structs.replace(
        route, instances=[], ports=[], stopped=True, stopped_instances=[]
    )
    routing.save_routes()
    log.info("service_stopped", route=key)


async def _start(routing: Routing, key: str, route: Route, *, replace: bool) -> None:
    """Start the route's release on fresh ports and move traffic to it; with
    `replace`, the instances it had (a restart) are drained and stopped after."""
    if not route.argv or (route.running() and not replace):
        return
    env = await routing.deploy.service_env(route.service_id)
    cwd = Path(route.cwd)
    new_ids: list[str] = []
    new_ports: list[int] = []
    for n in range(route.replicas):
        port = free_port()
        instance_id = f"{route.release_id}-{int(time.time() * 1000)}-{n}"
        routing.note_instance(instance_id, key)
        await routing.supervisor.start(
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
        if not await wait_healthy(url, timeout=routing.settings.health_timeout_seconds):
            await routing.stop_instances(key, new_ids)
            log.warning("service_start_unhealthy", route=key)
            return
    proxy = await routing.proxies.ensure(key, route.listen_port)
    proxy.set_upstream(new_ports[0])
    old_ids, old_ports = route.instances, route.ports
    routing.routes[key] = msgspec.structs.replace(
        route, instances=new_ids, ports=new_ports, stopped=False, stopped_instances=[]
    )
    routing.save_routes()
    for port in old_ports:
        await proxy.drain(port, timeout=routing.settings.drain_seconds)
    await routing.stop_instances(key, old_ids)
    await routing.report_instances()
    log.info("service_started", route=key, instances=new_ids)
