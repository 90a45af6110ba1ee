"""What an agent runs in an environment, for a drift scan that asks (`agent.<id>.observe`).

The scan sends a fresh random salt; the agent answers, for each route of the
environment it serves: the release and deployment it runs, the replicas asked
for and each instance's state, the command, the environment variables its
instances were started with (read from the kernel, /proc/<pid>/environ, so
that an agent restarted since still knows) as HMAC-SHA256(salt, name=value)
(never a value, and no hash that means anything after the scan), and its files against the
checksums recorded at build time; and, for each service, the release
directories it keeps, and instances it supervises that no route names. An
agent that does not answer is one the scan could not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from pathlib import Path

import msgspec
import psutil  # type: ignore[import-untyped]
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.deploy import release_files
from services.deploy.instances import Instance
from services.deploy.routes import Route, base_env
from services.deploy.routing import Routing

log = structlog.get_logger("agent")

# What the agent adds to every instance's environment: not the service's variables.
_OURS = frozenset({"PORT", "DEPLOYFORGE_DEPLOYMENT_ID"})


class ObserveRequest(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str
    salt: str  # hex


class InstanceSeen(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    release_id: str
    running: bool
    stopped: bool  # stopped on request (its release kept)


class RouteSeen(msgspec.Struct, frozen=True, kw_only=True):
    service_id: str
    release_id: str | None
    deployment_id: str
    replicas: int
    argv: list[str]
    stopped: bool
    instances: list[InstanceSeen]
    # name -> HMAC(salt, "name=value") of what the instances were started with; None
    # when the agent no longer knows (instances adopted after an agent restart).
    env: dict[str, str] | None
    env_defaults: list[str]  # names the release's deployforge.yml gives a default
    files: release_files.FileDrift | None  # None: no checksums recorded for the release
    # The release's deployforge.yml gave the command (false from agents before it was kept).
    argv_from_manifest: bool = False


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    environment_id: str
    routes: list[RouteSeen]
    release_dirs: dict[str, list[str]]  # service -> the release directories kept
    strays: list[str]  # instances supervised that no route names


def subject(namespace: str, agent_id: str) -> str:
    prefix = f"{namespace}." if namespace else ""
    return f"{prefix}agent.{agent_id}.observe"


def env_digest(salt: bytes, name: str, value: str) -> str:
    return hmac.new(salt, f"{name}={value}".encode(), hashlib.sha256).hexdigest()


async def answer(routing: Routing, nc: NATS) -> Subscription:
    """Answer the scans' requests for as long as the subscription lasts."""

    async def on_request(msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=ObserveRequest)
            salt = bytes.fromhex(request.salt)
        except (msgspec.DecodeError, ValueError):
            return
        observation = await asyncio.to_thread(observe, routing, request.environment_id, salt)
        await msg.respond(msgspec.json.encode(observation))

    return await nc.subscribe(subject(routing.namespace, routing.agent_id), cb=on_request)


def observe(routing: Routing, environment_id: str, salt: bytes) -> Observation:
    routes: list[RouteSeen] = []
    named: set[str] = set()
    services: set[str] = set()
    for key, route in list(routing.routes.items()):
        named.update(route.instances)
        service_id, route_environment = key.split(":", 1)
        if route_environment != environment_id:
            continue
        services.add(service_id)
        routes.append(_route(routing, service_id, route, salt))
    release_dirs = {}
    for service_id in sorted(services):
        releases = routing.work / "releases" / service_id
        kept = sorted(p.name for p in releases.iterdir() if p.is_dir()) if releases.is_dir() else []
        release_dirs[service_id] = kept
    strays = sorted(
        i.spec.instance_id
        for i in routing.supervisor.instances()
        if i.spec.instance_id not in named and i.running
    )
    return Observation(
        agent_id=routing.agent_id,
        environment_id=environment_id,
        routes=routes,
        release_dirs=release_dirs,
        strays=strays,
    )


def _route(routing: Routing, service_id: str, route: Route, salt: bytes) -> RouteSeen:
    instances = []
    env: dict[str, str] | None = None
    for instance_id in route.instances:
        instance = routing.supervisor.get(instance_id)
        running = instance is not None and instance.running
        instances.append(
            InstanceSeen(
                instance_id=instance_id,
                release_id=instance.spec.release_id if instance else route.release_id or "",
                running=running,
                stopped=instance_id in route.stopped_instances or route.stopped,
            )
        )
        if env is None and instance is not None:
            started = _started_with(instance, route)
            if started is not None:
                env = {name: env_digest(salt, name, value) for name, value in started.items()}
    files = None
    if route.release_id:
        files = release_files.compare(routing.work, route.release_id, Path(route.cwd))
    return RouteSeen(
        service_id=service_id,
        release_id=route.release_id,
        deployment_id=route.deployment_id,
        replicas=route.replicas,
        argv=list(route.argv),
        argv_from_manifest=route.argv_from_manifest,
        stopped=route.stopped,
        instances=instances,
        env=env,
        env_defaults=sorted(route.env_defaults),
        files=files,
    )


def _started_with(instance: Instance, route: Route) -> dict[str, str] | None:
    """The service's variables as the process was started with them: read from the
    kernel where it can be (what the process really has), else as it was given; None
    when neither the names nor the values are known (adopted after an agent restart
    by an agent that did not record the names)."""
    given = None if instance.spec.argv == ("?",) else dict(instance.spec.env)
    names = route.env_names
    if names is None:
        if given is None:
            return None
        base = base_env(Path(route.cwd))
        names = [n for n, v in given.items() if n not in _OURS and base.get(n) != v]
    environ = given
    if instance.running and instance.pid:
        with contextlib.suppress(psutil.Error, OSError):
            environ = dict(psutil.Process(instance.pid).environ())
    if environ is None:
        return None
    return {name: environ[name] for name in names if name in environ}
