"""Supervised instances: real HTTP servers kept alive, restarted, adopted by a new agent."""

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from services.deploy.health import free_port, health_url, wait_healthy
from services.deploy.instances import InstanceSpec
from services.deploy.supervisor import InstanceSupervisor

# Serves its release name on $PORT, after starting a helper child when asked to.
APP = """
import http.server, os, subprocess, sys
if len(sys.argv) > 2:
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open(sys.argv[2], "w").write(str(helper.pid))
release = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(release)))
        self.end_headers()
        self.wfile.write(release)
    def log_message(self, *args):
        pass
port = int(os.environ["PORT"])
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print(f"listening on {port}", flush=True)
server.serve_forever()
"""
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class Logs:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def __call__(self, instance_id: str, line: str) -> None:
        self.lines.append((instance_id, line))

    def of(self, instance_id: str) -> list[str]:
        return [line for name, line in self.lines if name == instance_id]


def spec(name: str, tmp_path: Path, *extra: str) -> InstanceSpec:
    return InstanceSpec(
        instance_id=f"rel_{name}-0",
        release_id=f"rel_{name}",
        argv=(sys.executable, "-c", APP, name, *extra),
        cwd=tmp_path,
        port=free_port(),
        env=ENV,
    )


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return str(response.read().decode())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def state_dir(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "state"
    yield path
    # Whatever a failing test left running is found through its records and stopped.
    leftover = InstanceSupervisor(path)
    await leftover.adopt([])


async def test_an_instance_serves_on_its_port_and_reports_output_and_usage(
    tmp_path: Path, state_dir: Path
) -> None:
    logs = Logs()
    supervisor = InstanceSupervisor(state_dir, on_log=logs)
    web = spec("v1", tmp_path)
    instance = await supervisor.start(web)
    try:
        assert await wait_healthy(health_url(web.port), timeout=15)
        assert await asyncio.to_thread(fetch, web.port) == "v1"
        await eventually(lambda: f"listening on {web.port}" in logs.of(web.instance_id))
        assert instance.pid > 0 and instance.port == web.port and instance.restarts == 0
        assert instance.stats().memory_rss > 1_000_000
        record = json.loads((state_dir / f"{web.instance_id}.json").read_text())
        assert (record["pid"], record["port"], record["release_id"]) == (
            instance.pid,
            web.port,
            "rel_v1",
        )
        assert "env" not in record
    finally:
        await supervisor.stop(web.instance_id)
    assert not alive(instance.pid)
    assert not (state_dir / f"{web.instance_id}.json").exists()


async def test_a_killed_instance_is_restarted_with_backoff(tmp_path: Path, state_dir: Path) -> None:
    logs = Logs()
    supervisor = InstanceSupervisor(state_dir, on_log=logs)
    web = spec("v1", tmp_path)
    instance = await supervisor.start(web)
    try:
        assert await wait_healthy(health_url(web.port), timeout=15)
        first = instance.pid
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: instance.restarts == 1)
        assert instance.pid != first
        assert await wait_healthy(health_url(web.port), timeout=15)
        assert await asyncio.to_thread(fetch, web.port) == "v1"
        assert "[supervisor] exited with code -9, restarting in 0.5s" in logs.of(web.instance_id)
        # Output of the new process keeps arriving.
        await eventually(lambda: logs.of(web.instance_id).count(f"listening on {web.port}") == 2)
        record = json.loads((state_dir / f"{web.instance_id}.json").read_text())
        assert (record["pid"], record["restarts"]) == (instance.pid, 1)
    finally:
        await supervisor.stop_all()


async def test_a_new_supervisor_adopts_running_instances_and_keeps_supervising_them(
    tmp_path: Path, state_dir: Path
) -> None:
    specs = [spec("v1", tmp_path), spec("v2", tmp_path)]
    first = InstanceSupervisor(state_dir)
    pids = [(await first.start(web)).pid for web in specs]
    for web in specs:
        assert await wait_healthy(health_url(web.port), timeout=15)
    await first.detach()  # the agent goes away; its instances do not

    logs = Logs()
    second = InstanceSupervisor(state_dir, on_log=logs)
    try:
        adopted = await second.adopt(specs)
        assert [instance.pid for instance in adopted] == pids
        assert all(instance.adopted and instance.restarts == 0 for instance in adopted)
        assert [await asyncio.to_thread(fetch, web.port) for web in specs] == ["v1", "v2"]
        assert adopted[0].stats().memory_rss > 1_000_000

        # Not its child, still supervised: a crash is noticed and the instance restarted.
        os.kill(pids[0], signal.SIGKILL)
        await eventually(lambda: adopted[0].restarts == 1)
        assert adopted[0].pid != pids[0] and not adopted[0].adopted
        assert await wait_healthy(health_url(specs[0].port), timeout=15)
        assert "[supervisor] exited, restarting in 0.5s" in logs.of(specs[0].instance_id)
    finally:
        await second.stop_all()
    assert not any(alive(instance.pid) for instance in adopted)
    assert list(state_dir.glob("*.json")) == []


async def test_a_recorded_instance_that_died_is_started_again_on_adoption(
    tmp_path: Path, state_dir: Path
) -> None:
    web = spec("v1", tmp_path)
    first = InstanceSupervisor(state_dir)
    dead = (await first.start(web)).pid
    await first.detach()
    os.kill(dead, signal.SIGKILL)
    await eventually(lambda: not alive(dead))

    second = InstanceSupervisor(state_dir)
    try:
        (instance,) = await second.adopt([web])
        assert instance.pid != dead and not instance.adopted and instance.restarts == 1
        assert await wait_healthy(health_url(web.port), timeout=15)
    finally:
        await second.stop_all()


async def test_adoption_stops_what_is_no_longer_wanted_or_runs_an_old_command(
    tmp_path: Path, state_dir: Path
) -> None:
    unwanted, changed = spec("old", tmp_path), spec("v1", tmp_path)
    first = InstanceSupervisor(state_dir)
    unwanted_pid = (await first.start(unwanted)).pid
    changed_pid = (await first.start(changed)).pid
    await first.detach()

    changed_now = InstanceSpec(
        instance_id=changed.instance_id,
        release_id=changed.release_id,
        argv=(*changed.argv[:3], "v1-patched"),
        cwd=tmp_path,
        port=changed.port,
        env=ENV,
    )
    second = InstanceSupervisor(state_dir)
    try:
        assert len(await second.adopt([changed_now])) == 1
        assert not alive(unwanted_pid) and not alive(changed_pid)
        assert await wait_healthy(health_url(changed.port), timeout=15)
        assert await asyncio.to_thread(fetch, changed.port) == "v1-patched"
        assert [path.stem for path in state_dir.glob("*.json")] == [changed.instance_id]
    finally:
        await second.stop_all()


async def test_stopping_an_instance_kills_its_whole_process_group(
    tmp_path: Path, state_dir: Path
) -> None:
    helper_file = tmp_path / "helper.pid"
    supervisor = InstanceSupervisor(state_dir)
    web = spec("v1", tmp_path, str(helper_file))
    instance = await supervisor.start(web)
    assert await wait_healthy(health_url(web.port), timeout=15)
    helper = int(helper_file.read_text())
    assert alive(helper)
    started = time.monotonic()
    await supervisor.stop(web.instance_id)
    assert time.monotonic() - started < 5
    assert not alive(instance.pid) and not alive(helper)
