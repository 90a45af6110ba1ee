"""Real servers for tests and benchmarks, and an isolated suite per test.

Servers, in order of preference: those named by `DEPLOYFORGE_TEST_NATS_URL`
and `DEPLOYFORGE_TEST_DATABASE_URL`; containers when a Docker engine
answers; otherwise nats-server and PostgreSQL from their PyPI wheels on free
ports. Each test then gets its own namespace (streams, subjects, service
names) and its own database, and removes both when it ends, so nothing is
left behind on shared servers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec
import nats

from libs.crypto import generate_master_key
from libs.database import drop_database, ensure_database, with_database
from libs.eventstore import EventStore, StreamSpec


class Servers(msgspec.Struct, frozen=True):
    nats_url: str
    # A database on the server we may connect to in order to create others.
    admin_dsn: str
    origin: str


def _docker_available() -> bool:
    """Whether a Docker engine answers `/_ping` (probed directly: the docker
    library leaks its socket when nothing answers)."""
    if os.environ.get("DEPLOYFORGE_TEST_DOCKER", "auto") == "never":
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" "
    except OSError:
        return False


@contextlib.asynccontextmanager
async def provision_servers(work_dir: Path) -> AsyncIterator[Servers]:
    """Yield running NATS (JetStream) and PostgreSQL servers for the duration."""
    nats_url = os.environ.get("DEPLOYFORGE_TEST_NATS_URL")
    database_url = os.environ.get("DEPLOYFORGE_TEST_DATABASE_URL")
    if nats_url and database_url:
        yield Servers(nats_url, database_url, "environment")
        return
    if _docker_available():
        async with _containers() as servers:
            yield servers
        return
    from libs.embedded import EmbeddedNats, EmbeddedPostgres

    nats_server = EmbeddedNats(work_dir / "nats")
    postgres = EmbeddedPostgres(work_dir / "postgres", fsync=False)
    # Should the session end without its teardown (an abrupt exit), the servers
    # still get their signal: nothing outlives the test run.
    atexit.register(nats_server.signal_now)
    atexit.register(postgres.signal_now)
    started = await asyncio.gather(nats_server.start(), postgres.start(), return_exceptions=True)
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome  # after the finally below stopped the one that did start
        yield Servers(nats_server.url, postgres.url(), "embedded")
    finally:
        await asyncio.gather(nats_server.stop(), postgres.stop())


@contextlib.asynccontextmanager
async def _containers() -> AsyncIterator[Servers]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    nats_container = DockerContainer("nats:2.11").with_command("-js").with_exposed_ports(4222)
    postgres = PostgresContainer(
        "postgres:17",
        username="postgres",
        password="postgres",  # noqa: S106 (a throwaway test container)
        dbname="postgres",
        driver=None,
    )
    with nats_container, postgres:
        wait_for_logs(nats_container, "Server is ready")
        host = nats_container.get_container_host_ip()
        port = nats_container.get_exposed_port(4222)
        yield Servers(f"nats://{host}:{port}", postgres.get_connection_url(), "containers")


class Suite(msgspec.Struct, frozen=True):
    """One test's slice of the servers: its namespace, database and master key."""

    nats_url: str
    database_url: str
    namespace: str
    secret_key: str

    def environ(self) -> dict[str, str]:
        """The environment that points a DeployForge process at this suite."""
        return {
            "DEPLOYFORGE_NATS_URL": self.nats_url,
            "DEPLOYFORGE_DATABASE_URL": self.database_url,
            "DEPLOYFORGE_NAMESPACE": self.namespace,
            "DEPLOYFORGE_SECRET_KEY": self.secret_key,
        }


@contextlib.asynccontextmanager
async def isolated_suite(servers: Servers, streams: Sequence[StreamSpec]) -> AsyncIterator[Suite]:
    """A fresh namespace and database; both removed afterwards."""
    token = secrets.token_hex(4)
    namespace = f"t{token}"
    database_url = with_database(servers.admin_dsn, f"deployforge_test_{token}")
    await ensure_database(database_url)
    try:
        yield Suite(servers.nats_url, database_url, namespace, generate_master_key())
    finally:
        nc = await nats.connect(servers.nats_url)
        try:
            store = EventStore(nc.jetstream(), namespace=namespace)
            await store.delete_streams(streams)
            # Everything else the namespace grew: jobs, logs, KV buckets.
            js = nc.jetstream()
            for info in await js.streams_info():
                name = info.config.name or ""
                if name.startswith(f"{namespace.upper()}_") or name.startswith(f"KV_{namespace}_"):
                    await js.delete_stream(name)
        finally:
            await nc.close()
        await drop_database(database_url)
