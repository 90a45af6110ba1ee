"""Fixtures: real servers for the session, an isolated suite and a running stack per test."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from deployforge.projections import BY_NAME, STREAMS
from gateway.app import create_app
from gateway.settings import GatewaySettings
from libs.settings import load_settings
from libs.testing import Servers, Suite, isolated_suite, provision_servers
from services.auth.main import AuthSettings
from tests.challtestsrv import ChallTestSrv
from tests.receivers import Receivers

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
async def servers() -> AsyncIterator[Servers]:
    # Not under pytest's tmp root: as root, PostgreSQL runs as another user that
    # must traverse to its data, and pytest resets that root to mode 0700 when
    # another session starts.
    work_dir = Path(tempfile.mkdtemp(prefix="deployforge-test-"))
    try:
        async with provision_servers(work_dir) as found:
            yield found
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture
async def suite(servers: Servers) -> AsyncIterator[Suite]:
    async with isolated_suite(servers, STREAMS) as isolated:
        yield isolated


class Stack:
    """A running auth service and gateway on one suite, with an administrator."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.clients: list[TestClient[Any, Any]] = []
        self._stops: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._edges: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self.started: set[str] = set()
        self.admin_token = ""
        self.admin_id = ""
        self.org_id = ""

    @property
    def client(self) -> TestClient[Any, Any]:
        return self.clients[0]

    def auth_settings(self, **overrides: Any) -> AuthSettings:
        return load_settings(AuthSettings, self.suite.environ(), **overrides)

    def gateway_settings(self, **overrides: Any) -> GatewaySettings:
        return load_settings(GatewaySettings, self.suite.environ(), **overrides)

    async def _start(self, run_service: Any, settings: Any) -> asyncio.Event:
        """Run a service's `run(settings, stop, ready)` in this process until it is ready."""
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_service(settings, stop, ready))
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            waiter.cancel()
            task.result()
        self._stops.append(stop)
        self._tasks.append(task)
        return stop

    async def start(self, name: str, **overrides: Any) -> asyncio.Event:
        """Any context of deployforge/projections.py CONTEXTS, in this process; the
        event that stops it."""
        context = BY_NAME[name]
        if name == "domains":  # no CA unless a test brings one (pebble)
            overrides.setdefault("acme_directory_url", "")
        settings = load_settings(context.settings, self.suite.environ(), **overrides)
        stop = await self._start(context.run, settings)
        self.started.add(name)
        return stop

    async def start_all(self) -> None:
        """Every context not running yet (so that /readyz can answer 200), each as its
        own `start_*` would start it."""
        for name in BY_NAME:
            if name in self.started:
                continue
            if name == "webhooks":
                await self.start_webhooks()
            else:
                await self.start(name)

    async def start_auth(self, **overrides: Any) -> None:
        await self.start("auth", **overrides)

    async def start_deploy(self, **overrides: Any) -> None:
        await self.start("deploy", **overrides)

    async def start_webhooks(self, **overrides: Any) -> asyncio.Event:
        """The webhooks service; loopback receivers are allowed and retries compressed."""
        overrides.setdefault("webhook_allowed_networks", "127.0.0.0/8")
        overrides.setdefault("webhook_retry_schedule", "0,0.2,0.2,0.2")
        return await self.start("webhooks", **overrides)

    async def start_agent(self, work_dir: Path, **overrides: Any) -> asyncio.Event:
        """An agent in this process; returns the event that stops it."""
        from services.deploy.agent import AgentSettings
        from services.deploy.agent import run as run_agent

        overrides.setdefault("detach_on_stop", False)  # nothing outlives a test
        settings = load_settings(
            AgentSettings, self.suite.environ(), work_dir=str(work_dir), **overrides
        )
        return await self._start(run_agent, settings)

    async def start_edge(self, **overrides: Any) -> Any:
        """An edge replica in this process on ports the kernel picks; returns the Edge."""
        from services.edge.main import Edge, EdgeSettings

        overrides.setdefault("edge_host", "127.0.0.1")
        overrides.setdefault("edge_http_port", 0)
        overrides.setdefault("edge_https_port", 0)
        edge = Edge(load_settings(EdgeSettings, self.suite.environ(), **overrides))
        await self._start(lambda _settings, stop, ready: edge.run(stop, ready), edge.settings)
        self._edges[edge.replica_id] = (self._stops[-1], self._tasks[-1])
        return edge

    async def stop_edge(self, edge: Any) -> None:
        """Stop one edge replica, and wait until it has stopped."""
        stop, task = self._edges.pop(edge.replica_id)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    async def add_gateway(self, **overrides: Any) -> TestClient[Any, Any]:
        # Tests poll; only the rate-limit tests ask for a real limit.
        overrides.setdefault("rate_limit_per_minute", 100_000)
        client: TestClient[Any, Any] = TestClient(
            TestServer(create_app(self.gateway_settings(**overrides)))
        )
        await client.start_server()
        self.clients.append(client)
        return client

    async def login(self, email: str, password: str) -> dict[str, Any]:
        resp = await self.client.post("/v1/auth/login", json={"email": email, "password": password})
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def bootstrap(self) -> None:
        from gateway import keys
        from libs.messaging import CommandBus

        bus = CommandBus(self.client.server.app[keys.NC], namespace=self.suite.namespace)
        await bus.request(
            "auth", "bootstrap_admin", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        tokens = await self.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        self.admin_token = tokens["access_token"]
        me = await (await self.client.get("/v1/users/me", headers=self.auth())).json()
        self.admin_id = me["id"]
        self.org_id = me["default_organization_id"]

    async def outsider(self, email: str = "rival@example.com") -> dict[str, str]:
        """Headers of a user who belongs to an organization of their own and not to ours."""
        password = "s3cret-pass-for-a-rival"
        resp = await self.client.post(
            "/v1/users",
            json={"email": email, "password": password, "name": "Rival"},
            headers=self.auth(),
        )
        assert resp.status == 201, await resp.text()
        user_id = (await resp.json())["id"]
        token = (await self.login(email, password))["access_token"]
        resp = await self.client.post(
            "/v1/organizations", json={"name": "Rival Inc"}, headers=self.auth(token)
        )
        assert resp.status == 201, await resp.text()
        own_org = (await resp.json())["id"]
        resp = await self.client.delete(
            f"/v1/organizations/{self.org_id}/members/{user_id}", headers=self.auth()
        )
        assert resp.status == 204, await resp.text()
        resp = await self.client.post(
            "/v1/auth/login",
            json={"email": email, "password": password, "organization_id": own_org},
        )
        assert resp.status == 200, await resp.text()
        return self.auth((await resp.json())["access_token"])

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    async def close_services(self) -> None:
        """Stop every auth replica this stack started (the gateways keep running)."""
        for stop in self._stops:
            stop.set()
        for task in self._tasks:
            # Generous: a service cancelled mid-shutdown (the machine's fsyncing NATS can
            # be slow) may leave its HTTP sessions unclosed, which fails the whole run.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
        self._stops.clear()
        self._tasks.clear()
        self.started.clear()

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.close_services()


@pytest.fixture
async def stack(suite: Suite) -> AsyncIterator[Stack]:
    running = Stack(suite)
    try:
        await running.start_auth()
        await running.start_deploy()
        await running.add_gateway()
        await running.bootstrap()
        yield running
    finally:
        await running.close()


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    made = Receivers()
    try:
        yield made
    finally:
        for receiver in made.started:
            await receiver.stop()


@pytest.fixture
async def dns() -> AsyncIterator[ChallTestSrv]:
    """pebble-challtestsrv: a real DNS server whose records a test sets."""
    server = ChallTestSrv()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
