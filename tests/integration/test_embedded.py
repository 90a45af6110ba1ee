"""The embedded nats-server and PostgreSQL keep their data across restarts."""

import io
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import nats
import pytest

from deployforge.supervisor import Supervisor
from libs.embedded import PG_SYSTEM_USER, EmbeddedNats, EmbeddedPostgres

pytestmark = pytest.mark.integration


def wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.02)


async def test_nats_keeps_a_published_message_across_restart(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    try:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"])
        ack = await js.publish("events.deployment", b"deployment.started")
        await client.close()
    finally:
        await server.stop()

    again = EmbeddedNats(tmp_path / "nats")
    assert again.url == server.url  # the recorded port is reused
    await again.start()
    try:
        client = await nats.connect(again.url)
        message = await client.jetstream().get_msg("EVENTS", ack.seq)
        await client.close()
    finally:
        await again.stop()
    assert message.data == b"deployment.started"


async def test_nats_fsyncs_every_write_by_default(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path)
    await server.start()
    try:
        jsz = f"http://127.0.0.1:{server.http_port}/jsz"
        async with aiohttp.ClientSession() as http, http.get(jsz) as response:
            config = (await response.json())["config"]
    finally:
        await server.stop()
    assert config["sync_always"] is True
    assert json.loads((tmp_path / "ports.json").read_text()) == {
        "nats": server.port,
        "nats_http": server.http_port,
    }


def test_a_recorded_port_taken_meanwhile_is_replaced(tmp_path: Path) -> None:
    first = EmbeddedNats(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        second = EmbeddedNats(tmp_path)
    assert second.port != first.port
    assert second.http_port == first.http_port
    assert json.loads((tmp_path / "ports.json").read_text())["nats"] == second.port


async def test_nats_refuses_a_second_server_on_the_same_store(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path)
    await server.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            await EmbeddedNats(tmp_path).start()
    finally:
        await server.stop()


async def test_postgres_keeps_rows_across_restart(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", fsync=False)
    await server.start()
    try:
        conn = await asyncpg.connect(server.url())
        await conn.execute("CREATE TABLE deployments (id text PRIMARY KEY)")
        await conn.execute("INSERT INTO deployments VALUES ('d-1')")
        await conn.close()
    finally:
        await server.stop()

    again = EmbeddedPostgres(tmp_path / "pg", fsync=False)
    assert again.url() == server.url()
    await again.start()
    try:
        conn = await asyncpg.connect(again.url())
        rows = await conn.fetch("SELECT id FROM deployments")
        owner = await conn.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database LIMIT 1")
        await conn.close()
    finally:
        await again.stop()
    assert [row["id"] for row in rows] == ["d-1"]
    assert owner == "postgres"


async def test_postgres_starts_after_being_killed(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path, fsync=False)
    await server.start()
    postmaster = int((tmp_path / "pgdata" / "postmaster.pid").read_text().split()[0])
    if os.geteuid() == 0:
        # PostgreSQL refuses root, so it must have dropped to the system user.
        assert os.stat(f"/proc/{postmaster}").st_uid != 0
        assert (tmp_path / "pgdata").owner() == PG_SYSTEM_USER
    conn = await asyncpg.connect(server.url())
    await conn.execute("CREATE TABLE t (x int)")
    await conn.execute("INSERT INTO t VALUES (1)")
    await conn.close()

    # Like the OOM killer: only the postmaster, leaving a stale postmaster.pid.
    os.kill(postmaster, signal.SIGKILL)
    wait_gone(postmaster)
    await server.stop()
    assert (tmp_path / "pgdata" / "postmaster.pid").exists()

    again = EmbeddedPostgres(tmp_path, fsync=False)
    await again.start()
    try:
        conn = await asyncpg.connect(again.url())
        assert await conn.fetchval("SELECT x FROM t") == 1
        await conn.close()
    finally:
        await again.stop()


async def test_postgres_starts_when_its_old_pid_now_belongs_to_another_program(
    tmp_path: Path,
) -> None:
    server = EmbeddedPostgres(tmp_path, fsync=False)
    await server.start()
    await server.stop()
    # After a container restart the dead postmaster's pid can belong to an
    # unrelated process of the same user; postgres alone refuses to start then.
    user = server.preexec_user()
    as_user = {} if user is None else {"user": user[0], "group": user[1], "extra_groups": []}
    other = subprocess.Popen(["/bin/sleep", "30"], **as_user)
    try:
        (tmp_path / "pgdata" / "postmaster.pid").write_text(
            f"{other.pid}\n{tmp_path / 'pgdata'}\n1700000000\n{server.port}\n\n127.0.0.1\n"
            "  0 0\nready   \n"
        )
        await server.start()
        await server.stop()
    finally:
        other.kill()
        other.wait()


async def test_servers_run_under_the_supervisor_and_stop_cleanly(tmp_path: Path) -> None:
    # The way `deployforge up` runs them: argv and user from the classes,
    # processes owned by the supervisor.
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    broker = EmbeddedNats(tmp_path / "nats")
    database = EmbeddedPostgres(tmp_path / "pg", fsync=False)
    database.init()
    supervisor.add("nats", broker.command())
    supervisor.add("postgres", database.command(), user=database.preexec_user())
    await supervisor.start_all()
    try:
        await broker.wait_ready()
        await database.wait_ready()
        conn = await asyncpg.connect(database.url())
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        await supervisor.stop()
    log = out.getvalue()
    assert "postgres | " in log
    assert "database system is shut down" in log
    assert "Server Exiting" in log
    assert supervisor.restarts == {"nats": 0, "postgres": 0}
