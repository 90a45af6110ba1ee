"""Benchmark 4: deployments through the gateway, the deploy service and an agent.

The auth service, the deploy service, the gateway and a deploy agent each run
in their own process (`python -m ...`, configured by `DEPLOYFORGE_*`). The
benchmark makes a git repository holding a tiny HTTP app whose build command
is `python -c pass`, and follows the events the deploy service stores (an
ordered JetStream consumer on `<ns>.deployment.*` and `<ns>.dispatch.*`),
whose `DF-Occurred-At` header is when the deploy service recorded them.

1. Sequential deployments of one service, each started once the previous one
   ended: time from the deploy request to the first step running, against
   the request's own round trip (the `create_deployment` command behind it).
2. The same deployments end to end, with each step's duration, against the
   same fetch, build, start and health check done by hand in this process.
3. Deployments in every organization at once, with a low running limit per
   organization so that most of them queue: total time, throughput, and
   whether each organization's deployments started in the order they came.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from bench.gateway import gateway_env
from bench.procs import Child, running, wait_until
from bench.report import Table, fmt, fmt_ratio
from bench.stack import ADMIN_EMAIL, ADMIN_PASSWORD, QUIET, auth_service, bootstrap_admin
from bench.stats import Summary, ratio, summarize
from libs.embedded import free_port
from libs.events import H_EVENT_TYPE, H_OCCURRED_AT
from libs.eventstore import EventStore
from libs.messaging import CommandBus
from libs.testing import Servers, Suite, isolated_suite
from services.auth.events import STREAM as AUTH_STREAM
from services.deploy import jobs
from services.deploy.events import CODECS
from services.deploy.events import STREAM as DEPLOY_STREAM

# The bench's own interpreter: `python` on PATH may be a slow shim (pyenv's is
# a shell script adding ~0.1 s to every start), which is not the agent's cost.
PYTHON = sys.executable
STEPS = ("fetch", "build", "start", "health_check", "switch", "cleanup")
TERMINAL = frozenset({"deployment.succeeded", "deployment.failed", "deployment.cancelled"})
# How often the hand-made baseline polls the app's health URL.
BY_HAND_POLL = 0.01

APP = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Part 1 and 2: deployments of one service, one after the other (after warm-up).
    sequential: int = 20
    warmup: int = 1
    # Part 2's baseline: fetch, build, start and health check by hand.
    by_hand: int = 10
    # Part 3: `per_organization` services in each of `organizations`, all deployed at once.
    organizations: int = 5
    per_organization: int = 4
    # DEPLOYFORGE_MAX_RUNNING_DEPLOYMENTS of the deploy service.
    max_running: int = 2
    # DEPLOYFORGE_CONCURRENCY of the agent: every organization's slots at once,
    # so that the organizations' limit is what makes deployments queue.
    agent_concurrency: int = 10
    timeout: float = 60.0


# --- what the deploy service stored -----------------------------------------------------


class Seen(msgspec.Struct, frozen=True):
    type: str
    # Wall-clock seconds: when the deploy service recorded the event.
    occurred: float
    seq: int


class Timeline:
    """The deployment and dispatch events of the suite, as they are stored."""

    def __init__(self) -> None:
        self.events: dict[str, list[Seen]] = defaultdict(list)
        # Stream sequence of each deployment's SlotQueued / SlotReleased in its
        # organization's dispatch queue.
        self.queued: dict[str, int] = {}
        self.released: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def on_deployment(self, msg: Msg) -> None:
        headers = msg.headers or {}
        seen = Seen(
            type=headers.get(H_EVENT_TYPE, ""),
            occurred=datetime.fromisoformat(headers[H_OCCURRED_AT]).timestamp(),
            seq=msg.metadata.sequence.stream,
        )
        async with self._changed:
            self.events[msg.subject.rpartition(".")[2]].append(seen)
            self._changed.notify_all()

    async def on_dispatch(self, msg: Msg) -> None:
        event_type = (msg.headers or {}).get(H_EVENT_TYPE, "")
        body = msgspec.json.decode(msg.data)
        seq = msg.metadata.sequence.stream
        async with self._changed:
            if event_type == "dispatch.queued":
                self.queued[body["deployment_id"]] = seq
            elif event_type == "dispatch.released":
                self.released[body["deployment_id"]] = seq
            self._changed.notify_all()

    def first(self, deployment_id: str, event_type: str) -> Seen | None:
        return next((e for e in self.events[deployment_id] if e.type == event_type), None)

    def first_step(self, deployment_id: str) -> Seen | None:
        return self.first(deployment_id, "deployment.step_started")

    def ended(self, deployment_id: str) -> Seen | None:
        return next((e for e in self.events[deployment_id] if e.type in TERMINAL), None)

    def done(self, deployment_id: str) -> bool:
        """Ended, and its slot given back: the next deployment will not queue behind it."""
        return self.ended(deployment_id) is not None and deployment_id in self.released

    async def wait(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(check)
        except TimeoutError:
            raise TimeoutError(f"{what} not within {timeout:g} s") from None


# --- the HTTP API -----------------------------------------------------------------------


class Api:
    """JSON calls to the gateway as the administrator."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        body = await self.call(
            "POST", "/v1/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        self.headers = {"Authorization": f"Bearer {body['access_token']}"}

    async def call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        async with self.http.request(
            method, f"{self.base}{path}", json=payload, headers={**self.headers, **(headers or {})}
        ) as response:
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()

    async def create(self, path: str, payload: dict[str, Any]) -> str:
        body = await self.call("POST", path, payload)
        created: str = body["id"]
        return created

    async def deploy(self, service_id: str, environment_id: str) -> tuple[str, float, float]:
        """POST a deployment: its id, when the request was sent and when its reply came."""
        sent = time.time()
        body = await self.call(
            "POST", f"/v1/services/{service_id}/deployments", {"environment_id": environment_id}
        )
        return str(body["id"]), sent, time.time()


async def create_service(api: Api, org: str, project: str, name: str, repo: Path) -> str:
    return await api.create(
        f"/v1/organizations/{org}/services",
        {
            "project_id": project,
            "name": name,
            "repository_url": f"file://{repo}",
            "build_command": [PYTHON, "-c", "pass"],
            "run_command": [PYTHON, "app.py"],
            "health_check_path": "/health",
        },
    )


# --- the repository and the baseline ----------------------------------------------------


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    git = shutil.which("git") or "git"
    subprocess.run([git, "-C", str(cwd), *args], check=True, capture_output=True, env=env)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text(APP)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "tiny HTTP app")
    return path


def _app_env(cwd: Path, port: int) -> dict[str, str]:
    # What the agent gives an instance (services/deploy/routes.py base_env), and PORT.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PORT": str(port),
    }


async def _exec(*argv: str, cwd: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=_app_env(cwd, 0),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if await process.wait() != 0:
        raise RuntimeError(f"{argv[:3]} exited with {process.returncode}")


class ByHand(msgspec.Struct, frozen=True):
    clone: float
    build: float
    healthy: float

    @property
    def total(self) -> float:
        return self.clone + self.build + self.healthy


async def by_hand(repo: Path, dest: Path) -> ByHand:
    """git clone, `python -c pass`, start the app and poll its health URL: what the
    agent's fetch, build, start and health_check steps do, without the agent."""
    git = shutil.which("git") or "git"
    begun = time.perf_counter()
    await _exec(
        git,
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--no-tags",
        f"file://{repo}",
        str(dest),
        cwd=dest.parent,
    )
    cloned = time.perf_counter()
    await _exec(PYTHON, "-c", "pass", cwd=dest)
    built = time.perf_counter()
    port = free_port()
    app = await asyncio.create_subprocess_exec(
        PYTHON,
        "app.py",
        cwd=dest,
        env=_app_env(dest, port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"http://127.0.0.1:{port}/health") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise TimeoutError("the app started by hand never answered")
                await asyncio.sleep(BY_HAND_POLL)
        healthy = time.perf_counter()
    finally:
        with contextlib.suppress(ProcessLookupError):
            app.terminate()
        await app.wait()
    shutil.rmtree(dest, ignore_errors=True)
    return ByHand(clone=cloned - begun, build=built - cloned, healthy=healthy - built)


# --- the processes ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def processes(
    suite: Suite,
    log_dir: Path,
    agent_dir: Path,
    settings: Settings,
    *,
    drift_env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[str, str]]:
    """Auth, deploy, gateway and agent (and drift, given its environment), ready; the
    gateway's URL and the admin's org."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    deploy_env = {
        **suite.environ(),
        **QUIET,
        "DEPLOYFORGE_MAX_RUNNING_DEPLOYMENTS": str(settings.max_running),
    }
    agent_env = {
        **suite.environ(),
        **QUIET,
        "DEPLOYFORGE_AGENT_ID": "bench-agent",
        "DEPLOYFORGE_WORK_DIR": str(agent_dir),
        # Stopping the agent stops every instance it started: nothing outlives the run.
        "DEPLOYFORGE_DETACH_ON_STOP": "false",
        "DEPLOYFORGE_CONCURRENCY": str(settings.agent_concurrency),
    }
    async with contextlib.AsyncExitStack() as services:
        auth = await services.enter_async_context(auth_service(suite, log_dir))
        deploy = await services.enter_async_context(
            running("deploy", "services.deploy.main", deploy_env, log_dir)
        )
        children = [auth, deploy]
        names = ["deploy"]
        if drift_env is not None:
            drift = await services.enter_async_context(
                running("drift", "services.drift.main", drift_env, log_dir)
            )
            children.append(drift)
            names.append("drift")
        nc = await nats.connect(suite.nats_url)
        try:
            bus = CommandBus(nc, namespace=suite.namespace)
            for name in names:
                await wait_until(
                    functools.partial(bus.ping, name), f"the {name} service", children=children
                )
            admin = await bootstrap_admin(nc, suite)
        finally:
            await nc.close()
        async with (
            running("gateway", "gateway.main", gateway_env(suite, port), log_dir) as gateway,
            running("agent", "services.deploy.agent", agent_env, log_dir) as agent,
        ):
            children += [gateway, agent]

            async def gateway_ready() -> bool:
                # The services this bench runs: /readyz also asks for the webhooks service.
                async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as r:
                    checks = (await r.json())["checks"] if r.status in (200, 503) else {}
                    return all(
                        checks.get(k) == "ok" for k in ("nats", "postgres", "auth", "deploy")
                    )

            await wait_until(gateway_ready, "the gateway", children=children)
            await _agent_pulling(suite, children)
            yield base, admin.organization_id


async def _agent_pulling(suite: Suite, children: Sequence[Child]) -> None:
    """Until the agent waits on the jobs queue with a pull request."""
    nc = await nats.connect(suite.nats_url)
    try:
        js = nc.jetstream()

        async def pulling() -> bool:
            info = await js.consumer_info(jobs.stream_name(suite.namespace), jobs.AGENTS_CONSUMER)
            return (info.num_waiting or 0) > 0

        await wait_until(pulling, "the agent", children=children)
    finally:
        await nc.close()


def processes_under(path: Path) -> list[int]:
    """Pids of the processes whose working directory is inside `path`."""
    found = []
    root = str(path.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd")
            if cwd == root or cwd.startswith(root + os.sep):
                found.append(int(entry.name))
    return found


def kill_leftovers(paths: Sequence[Path]) -> int:
    """SIGKILL what still runs from the benchmark's directories; how many there were."""
    pids = [pid for path in paths if path.exists() for pid in processes_under(path)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


# --- the measurements -------------------------------------------------------------------


class Sequential(msgspec.Struct, frozen=True, kw_only=True):
    round_trip: list[float]
    to_created: list[float]
    to_dispatched: list[float]
    to_started: list[float]
    to_first_step: list[float]
    to_succeeded: list[float]
    steps: dict[str, list[float]]
    # Overhead: to_succeeded minus the sum of the step durations.
    outside_steps: list[float]
    # From a step's step_finished to the next one's step_started: one report_step
    # command (and nothing else: the agent starts the next step right away).
    between_steps: list[float]
    failed: list[str]
    by_hand: list[ByHand]


class Concurrent(msgspec.Struct, frozen=True, kw_only=True):
    deployments: int
    elapsed: float
    round_trip: list[float]
    # Request -> deployment.created, and -> its place in the queue (deployment.queued
    # or .dispatched, the last thing create_deployment records).
    to_created: list[float]
    to_placed: list[float]
    waited: list[float]  # created -> started (queue, then the agent taking it)
    ran: list[float]  # started -> ended
    to_succeeded: list[float]
    failed: list[str]
    # Per organization: (created order kept at start, queued order kept at start,
    # dispatched in queued order, queued in created order).
    orders: list[tuple[bool, bool, bool, bool]]
    # How many had to wait in their organization's queue (deployment.queued).
    queued: int


async def _failure(api: Api, deployment_id: str, ended: Seen) -> str:
    deployment = await api.call(
        "GET",
        f"/v1/deployments/{deployment_id}",
        headers={"X-Consistency-Token": f"deploy:{ended.seq}"},
    )
    return f"{deployment_id} {ended.type}: {deployment.get('failure_reason')}"


def _since(sent: float, seen: Seen | None) -> float | None:
    return None if seen is None else seen.occurred - sent


def _add(samples: list[float], value: float | None) -> None:
    if value is not None:
        samples.append(value)


async def sequential(
    api: Api,
    timeline: Timeline,
    service_id: str,
    environment_id: str,
    repo: Path,
    scratch: Path,
    settings: Settings,
) -> Sequential:
    out = Sequential(
        round_trip=[],
        to_created=[],
        to_dispatched=[],
        to_started=[],
        to_first_step=[],
        to_succeeded=[],
        steps={name: [] for name in STEPS},
        outside_steps=[],
        between_steps=[],
        failed=[],
        by_hand=[],
    )
    for n in range(settings.warmup + settings.sequential):
        deployment_id, sent, replied = await api.deploy(service_id, environment_id)
        await timeline.wait(
            functools.partial(timeline.done, deployment_id),
            f"deployment {deployment_id}",
            settings.timeout,
        )
        ended = timeline.ended(deployment_id)
        assert ended is not None
        steps = await api.call(
            "GET",
            f"/v1/deployments/{deployment_id}/steps",
            headers={"X-Consistency-Token": f"deploy:{ended.seq}"},
        )
        warm = n >= settings.warmup
        if warm and n - settings.warmup < settings.by_hand:
            # Interleaved with the agent's deployments, so that noise falls on both.
            out.by_hand.append(await by_hand(repo, scratch / f"by-hand-{n}"))
        if not warm:
            continue
        if ended.type != "deployment.succeeded":
            out.failed.append(await _failure(api, deployment_id, ended))
            continue
        out.round_trip.append(replied - sent)
        _add(out.to_created, _since(sent, timeline.first(deployment_id, "deployment.created")))
        _add(
            out.to_dispatched, _since(sent, timeline.first(deployment_id, "deployment.dispatched"))
        )
        _add(out.to_started, _since(sent, timeline.first(deployment_id, "deployment.started")))
        _add(out.to_first_step, _since(sent, timeline.first_step(deployment_id)))
        total = ended.occurred - sent
        out.to_succeeded.append(total)
        in_steps = 0.0
        for step in steps:
            if step["name"] in out.steps and step["duration_seconds"] is not None:
                out.steps[step["name"]].append(step["duration_seconds"])
                in_steps += step["duration_seconds"]
        out.outside_steps.append(total - in_steps)
        events = sorted(timeline.events[deployment_id], key=lambda e: e.seq)
        out.between_steps.extend(
            after.occurred - before.occurred
            for before, after in itertools.pairwise(events)
            if before.type == "deployment.step_finished" and after.type == "deployment.step_started"
        )
    return out


async def _organization(api: Api, n: int, repo: Path, services: int) -> tuple[str, str, list[str]]:
    org = await api.create("/v1/organizations", {"name": f"Bench org {n}"})
    env = await api.create(f"/v1/organizations/{org}/environments", {"name": "prod"})
    project = await api.create(f"/v1/organizations/{org}/projects", {"name": f"Shop {n}"})
    ids = [await create_service(api, org, project, f"web-{k}", repo) for k in range(services)]
    return org, env, ids


def _same_order(ids: list[str], first: dict[str, int], second: dict[str, int]) -> bool:
    return sorted(ids, key=lambda d: first.get(d, 0)) == sorted(ids, key=lambda d: second.get(d, 0))


async def concurrent(api: Api, timeline: Timeline, repo: Path, settings: Settings) -> Concurrent:
    orgs = await asyncio.gather(
        *(
            _organization(api, n, repo, settings.per_organization)
            for n in range(settings.organizations)
        )
    )
    # Round robin over the organizations, all in flight at once.
    order = [
        (org, env, services[k])
        for k in range(settings.per_organization)
        for org, env, services in orgs
    ]
    began = time.time()
    posted = await asyncio.gather(*(api.deploy(svc, env) for _, env, svc in order))
    ids = [deployment_id for deployment_id, _, _ in posted]
    await timeline.wait(
        lambda: all(timeline.done(d) for d in ids), f"{len(ids)} deployments", settings.timeout * 2
    )
    ends = [timeline.ended(d) for d in ids]
    elapsed = max(e.occurred for e in ends if e is not None) - began
    out = Concurrent(
        deployments=len(ids),
        elapsed=elapsed,
        round_trip=[replied - sent for _, sent, replied in posted],
        to_created=[],
        to_placed=[],
        waited=[],
        ran=[],
        to_succeeded=[],
        failed=[],
        orders=[],
        queued=0,
    )
    seqs: dict[str, dict[str, int]] = defaultdict(dict)
    for (deployment_id, sent, _), ended in zip(posted, ends, strict=True):
        assert ended is not None
        for kind in ("created", "dispatched", "started", "queued"):
            seen = timeline.first(deployment_id, f"deployment.{kind}")
            if seen is not None:
                seqs[kind][deployment_id] = seen.seq
        created = timeline.first(deployment_id, "deployment.created")
        started = timeline.first(deployment_id, "deployment.started")
        _add(out.to_created, _since(sent, created))
        placed = [
            e
            for e in timeline.events[deployment_id]
            if e.type in ("deployment.queued", "deployment.dispatched")
        ]
        _add(out.to_placed, _since(sent, min(placed, key=lambda e: e.seq, default=None)))
        if created and started:
            # Waiting does not depend on how the deployment ended: every started one counts.
            out.waited.append(started.occurred - created.occurred)
        if ended.type != "deployment.succeeded":
            out.failed.append(await _failure(api, deployment_id, ended))
            continue
        if started:
            out.ran.append(ended.occurred - started.occurred)
        out.to_succeeded.append(ended.occurred - sent)
    for org, _, _ in orgs:
        mine = [d for (o, _, _), d in zip(order, ids, strict=True) if o == org]
        out.orders.append(
            (
                _same_order(mine, seqs["created"], seqs["started"]),
                _same_order(mine, timeline.queued, seqs["started"]),
                _same_order(mine, timeline.queued, seqs["dispatched"]),
                _same_order(mine, seqs["created"], timeline.queued),
            )
        )
    return msgspec.structs.replace(out, queued=len(seqs["queued"]))


async def _dispatch_load(nc: NATS, namespace: str, org: str) -> tuple[int, float]:
    """How many events the organization's dispatch queue holds, and how long a load takes."""
    store = EventStore(nc.jetstream(), namespace=namespace)
    store.register(DEPLOY_STREAM)
    begun = time.perf_counter()
    loaded = await store.load("dispatch", org, CODECS["dispatch"])
    return len(loaded.events), time.perf_counter() - begun


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    sequential: Sequential
    concurrent: Concurrent
    dispatch_events: int
    dispatch_load: float
    leftovers: int


async def measure(suite: Suite, work_dir: Path, settings: Settings) -> Outcome:
    root = work_dir / "deploys"
    agent_dir, scratch = root / "agent", root / "by-hand"
    scratch.mkdir(parents=True)
    repo = make_repo(root / "repo")
    try:
        async with processes(suite, work_dir, agent_dir, settings) as (base, admin_org):
            nc = await nats.connect(suite.nats_url)
            try:
                timeline = Timeline()
                js = nc.jetstream()
                for aggregate, cb in (
                    ("deployment", timeline.on_deployment),
                    ("dispatch", timeline.on_dispatch),
                ):
                    await js.subscribe(
                        f"{suite.namespace}.{aggregate}.*",
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.ALL,
                        cb=cb,
                    )
                async with aiohttp.ClientSession() as http:
                    api = Api(http, base)
                    await api.login()
                    env = await api.create(
                        f"/v1/organizations/{admin_org}/environments", {"name": "bench"}
                    )
                    project = await api.create(
                        f"/v1/organizations/{admin_org}/projects", {"name": "Sequential"}
                    )
                    service = await create_service(api, admin_org, project, "noop", repo)
                    seq = await sequential(api, timeline, service, env, repo, scratch, settings)
                    conc = await concurrent(api, timeline, repo, settings)
                events, load = await _dispatch_load(nc, suite.namespace, admin_org)
            finally:
                await nc.close()
    finally:
        # The agent stopped its instances on SIGTERM; anything still running is a leak.
        leftovers = kill_leftovers([agent_dir, scratch])
    return Outcome(
        sequential=seq,
        concurrent=conc,
        dispatch_events=events,
        dispatch_load=load,
        leftovers=leftovers,
    )


async def run(servers: Servers, work_dir: Path, settings: Settings) -> Table:
    async with isolated_suite(servers, [AUTH_STREAM, DEPLOY_STREAM]) as suite:
        outcome = await measure(suite, work_dir, settings)
    return _table(outcome, settings)


# --- the table --------------------------------------------------------------------------


def _row(label: str, samples: Sequence[float]) -> list[str]:
    s: Summary = summarize(samples)
    return [label, str(s.count), fmt(s.p50_ms, 1), fmt(s.p99_ms, 1), fmt(s.max_ms, 1)]


def _median(samples: Sequence[float]) -> float:
    return summarize(samples).p50_ms


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _table(o: Outcome, settings: Settings) -> Table:
    s, c = o.sequential, o.concurrent
    hand = s.by_hand
    rows = [
        _row("1. POST /v1/services/{id}/deployments round trip (baseline)", s.round_trip),
        _row("1. request → deployment.created recorded", s.to_created),
        _row("1. request → deployment.dispatched", s.to_dispatched),
        _row("1. request → deployment.started (agent took the job)", s.to_started),
        _row("1. request → first step running (fetch)", s.to_first_step),
        _row("2. request → deployment.succeeded", s.to_succeeded),
        *[_row(f"2. step {name}", s.steps[name]) for name in STEPS],
        _row("2. outside the steps (commands, queue, agent)", s.outside_steps),
        _row("2. between two steps (one report_step command)", s.between_steps),
        _row("2. by hand: git clone", [h.clone for h in hand]),
        _row("2. by hand: python -c pass", [h.build for h in hand]),
        _row("2. by hand: start + health (10 ms polls)", [h.healthy for h in hand]),
        _row("2. by hand: total (baseline)", [h.total for h in hand]),
        _row("3. POST round trip, all at once", c.round_trip),
        _row("3. request → deployment.created recorded", c.to_created),
        _row("3. request → queued or dispatched recorded", c.to_placed),
        _row("3. created → started (queued, then taken; all started)", c.waited),
        _row("3. started → succeeded (succeeded only)", c.ran),
        _row("3. request → succeeded", c.to_succeeded),
    ]
    fetch_build = _median(s.steps["fetch"]) + _median(s.steps["build"])
    start_health = _median(s.steps["start"]) + _median(s.steps["health_check"])
    hand_total = _median([h.total for h in hand])
    notes = [
        f"1-2: {settings.sequential} deployments of one service, one after the other (after "
        f"{settings.warmup} not counted), each once the previous one had ended and given back "
        "its slot. Times from just before the POST to when the deploy service recorded each "
        "event (DF-Occurred-At, the time deployment_steps.started_at shows); the POST answers "
        "once the read model has the deployment. Nearest-rank percentiles: with 20 samples "
        "p99 is the maximum.",
        f"First step running {fmt(_median(s.to_first_step), 1)} ms after the request (p50), "
        f"against {fmt(_median(s.round_trip), 1)} ms for the request's own round trip: "
        f"{fmt_ratio(ratio(_median(s.to_first_step), _median(s.round_trip)))}.",
        f"End to end {fmt(_median(s.to_succeeded), 0)} ms (p50) against "
        f"{fmt(hand_total, 0)} ms by hand (clone, build, start, poll health in this process, "
        f"{len(hand)} runs interleaved): "
        f"{fmt_ratio(ratio(_median(s.to_succeeded), hand_total))}. Agent fetch + build "
        f"{fmt(fetch_build, 0)} ms vs clone + build by hand "
        f"{fmt(_median([h.clone + h.build for h in hand]), 0)} ms; start + health_check "
        f"{fmt(start_health, 0)} ms vs {fmt(_median([h.healthy for h in hand]), 0)} ms "
        "(the agent polls health every 200 ms).",
        f"3: {c.deployments} deployments ({settings.per_organization} services in each of "
        f"{settings.organizations} organizations, round robin, all POSTed at once) with "
        f"DEPLOYFORGE_MAX_RUNNING_DEPLOYMENTS={settings.max_running} and an agent running up "
        f"to {settings.agent_concurrency} at once: all ended {c.elapsed:.1f} s after the first "
        f"request, {c.deployments / c.elapsed if c.elapsed else 0:.2f} deployments/s; "
        f"{c.queued} of them waited in their organization's queue.",
    ]
    for n, (created, queued, dispatched, arrival) in enumerate(c.orders, start=1):
        notes.append(
            f"Organization {n}: queue order kept (started in the order of creation): "
            f"{_yes(created)}. Started in queued (SlotQueued) order: {_yes(queued)}; "
            f"dispatched in queued order: {_yes(dispatched)}; queued in created order: "
            f"{_yes(arrival)}."
        )
    if len(s.round_trip) >= 10:
        notes.append(
            "POST round trip of the first 5 sequential deployments "
            f"{fmt(_median(s.round_trip[:5]), 1)} ms (p50), of the last 5 "
            f"{fmt(_median(s.round_trip[-5:]), 1)} ms."
        )
    notes.append(
        f"The sequential organization's dispatch queue (dispatch.<org>) held "
        f"{o.dispatch_events} events after the run; loading it, as every create_deployment "
        f"and every finish does, took {o.dispatch_load * 1000:.1f} ms from this process."
    )
    if s.failed or c.failed:
        notes.append(
            f"Not succeeded: {len(s.failed)} sequential, {len(c.failed)} concurrent; "
            f"first: {(s.failed or c.failed)[0]}"
        )
    notes.append(
        f"Processes left running after the agent stopped: {o.leftovers}"
        + (" (killed)." if o.leftovers else ".")
    )
    return Table(
        title="4. Deployments",
        columns=["interval", "n", "p50 ms", "p99 ms", "max ms"],
        rows=rows,
        notes=notes,
    )
