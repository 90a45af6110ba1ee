"""`deployforge up`: the whole suite on one machine.

Starts nats-server (JetStream, fsync on every write) and PostgreSQL from
their wheels in the data directory, unless DEPLOYFORGE_NATS_URL and
DEPLOYFORGE_DATABASE_URL name servers to use instead; creates streams and
schemas; then runs every service and the gateway under a supervisor that
restarts what crashes and stops everything on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import asyncpg
import nats

from deployforge.projections import AUTH, CONTEXTS, STREAMS
from deployforge.supervisor import Supervisor
from libs.crypto import generate_master_key
from libs.database import ensure_core_schema, ensure_database
from libs.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from libs.errors import DomainError
from libs.eventstore import EventStore
from libs.messaging import CommandBus, connect_nats
from libs.settings import CoreSettings, load_settings

ENDPOINTS_FILE = "endpoints.json"
DEFAULT_ADMIN_EMAIL = "admin@deployforge.local"


def _say(text: str) -> None:
    print(f"deployforge | {text}", flush=True)


def master_key(data_dir: Path, environ: Mapping[str, str]) -> str:
    """DEPLOYFORGE_SECRET_KEY, or the key kept in the data directory (made on first use)."""
    if environ.get("DEPLOYFORGE_SECRET_KEY"):
        return environ["DEPLOYFORGE_SECRET_KEY"]
    path = data_dir / "secret.key"
    if not path.exists():
        path.write_text(generate_master_key())
        path.chmod(0o600)
    return path.read_text().strip()


def read_endpoints(data_dir: Path) -> dict[str, str]:
    """The servers a running `up` uses, so other commands (replay) can find them."""
    path = data_dir / ENDPOINTS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def operator_settings(data_dir: Path, environ: Mapping[str, str] | None = None) -> CoreSettings:
    """The typed settings of an operator's command (replay, projections, bootstrap):
    `DEPLOYFORGE_*` first, then the servers a running `up` in `data_dir` uses."""
    found = {f"DEPLOYFORGE_{k.upper()}": v for k, v in read_endpoints(data_dir).items()}
    return load_settings(CoreSettings, {**found, **(os.environ if environ is None else environ)})


async def prepare(nats_url: str, database_url: str, namespace: str, replicas: int) -> None:
    """Create the database, the bookkeeping schema and every context's stream (idempotent)."""
    await ensure_database(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await ensure_core_schema(conn)
    finally:
        await conn.close()
    nc = await nats.connect(nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=namespace, replicas=replicas)
        for spec in STREAMS:
            await store.ensure_stream(spec)
    finally:
        await nc.close()


async def _wait_http_ok(url: str, supervisor: Supervisor, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while loop.time() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)
    raise TimeoutError(f"{url} did not become ready in {timeout:.0f}s")


async def bootstrap_admin(settings: CoreSettings, environ: Mapping[str, str]) -> None:
    email = environ.get("DEPLOYFORGE_ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL
    password = environ.get("DEPLOYFORGE_ADMIN_PASSWORD") or None
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(18)
    nc = await connect_nats(settings, "bootstrap")
    try:
        bus = CommandBus(nc, namespace=settings.namespace)
        result = await bus.request(
            "auth", "bootstrap_admin", {"email": email, "password": password}
        )
    finally:
        await nc.close()
    created = json.loads(result.data)["created"]
    if not created:
        _say("administrator already exists; log in with your credentials")
    elif generated:
        # Printed once, here, and stored nowhere in clear.
        _say(f"created administrator {email} with password: {password}")
        _say("this password is not shown again; change it or create a token after logging in")
    else:
        _say(f"created administrator {email} (password from DEPLOYFORGE_ADMIN_PASSWORD)")


async def run_up(data_dir: Path, host: str, port: int) -> int:
    environ = dict(os.environ)
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    namespace = environ.get("DEPLOYFORGE_NAMESPACE", "")
    replicas = int(environ.get("DEPLOYFORGE_STREAM_REPLICAS", "1"))
    supervisor = Supervisor(stop_timeout=8.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    nats_url = environ.get("DEPLOYFORGE_NATS_URL")
    database_url = environ.get("DEPLOYFORGE_DATABASE_URL")
    try:
        if nats_url and database_url:
            _say("using the servers named by DEPLOYFORGE_NATS_URL and DEPLOYFORGE_DATABASE_URL")
        else:
            sync = environ.get("DEPLOYFORGE_NATS_SYNC_INTERVAL", "always")
            embedded_nats = EmbeddedNats(data_dir / "nats", sync_interval=sync)
            postgres = EmbeddedPostgres(data_dir / "postgres")
            await asyncio.to_thread(postgres.init)
            supervisor.add("nats", embedded_nats.command())
            supervisor.add("postgres", postgres.command(), user=postgres.preexec_user())
            await supervisor.start("nats")
            await supervisor.start("postgres")
            await asyncio.gather(embedded_nats.wait_ready(), postgres.wait_ready(timeout=60))
            nats_url, database_url = embedded_nats.url, postgres.url("deployforge")
            _say(f"nats-server {nats_url} (sync_interval {sync}), postgres {postgres.url()}")
        await prepare(nats_url, database_url, namespace, replicas)
        (data_dir / ENDPOINTS_FILE).write_text(
            json.dumps({"nats_url": nats_url, "database_url": database_url})
        )
        env = {
            "DEPLOYFORGE_NATS_URL": nats_url,
            "DEPLOYFORGE_DATABASE_URL": database_url,
            "DEPLOYFORGE_SECRET_KEY": master_key(data_dir, environ),
            "DEPLOYFORGE_NAMESPACE": namespace,
        }
        python = sys.executable
        auth_metrics = free_port()
        for context in CONTEXTS:
            own = {"DEPLOYFORGE_METRICS_PORT": str(auth_metrics)} if context is AUTH else {}
            supervisor.add(context.name, [python, "-m", context.module], env={**env, **own})
        supervisor.add(
            "agent",
            [python, "-m", "services.deploy.agent"],
            env={
                **env,
                "DEPLOYFORGE_WORK_DIR": str(data_dir / "agent"),
                "DEPLOYFORGE_API_URL": f"http://{host}:{port}",
            },
        )
        supervisor.add(
            "gateway",
            [python, "-m", "gateway.main"],
            env={**env, "DEPLOYFORGE_HOST": host, "DEPLOYFORGE_PORT": str(port)},
        )
        supervisor.add("edge", [python, "-m", "services.edge.main"], env=env)
        for context in CONTEXTS:
            await supervisor.start(context.name)
        await supervisor.start("edge")
        await supervisor.start("agent")
        await supervisor.start("gateway")
        base = f"http://{host}:{port}"
        ready = asyncio.create_task(_wait_http_ok(f"{base}/readyz", supervisor))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            ready.result()
            await bootstrap_admin(
                load_settings(
                    CoreSettings,
                    {
                        **environ,
                        "DEPLOYFORGE_NATS_URL": nats_url,
                        "DEPLOYFORGE_NAMESPACE": namespace,
                    },
                ),
                environ,
            )
            _say(f"DeployForge is up: {base} (API docs {base}/docs); Ctrl-C stops it")
            _say(f"web UI: {base}/ui/ (sign in as the administrator); CLI: .venv/bin/dfctl")
            _say(
                "edge (the deployed domains): http on port "
                f"{environ.get('DEPLOYFORGE_EDGE_HTTP_PORT', '8880')}, https on "
                f"{environ.get('DEPLOYFORGE_EDGE_HTTPS_PORT', '8443')}"
            )
            _say(
                f"metrics: {base}/metrics (gateway), http://127.0.0.1:{auth_metrics}/metrics (auth)"
            )
            await stop.wait()
        else:
            ready.cancel()
        _say("stopping")
        return 0
    except (TimeoutError, OSError, DomainError, RuntimeError) as exc:
        _say(f"could not start: {exc}")
        return 1
    finally:
        await supervisor.stop()
        _say("stopped")
