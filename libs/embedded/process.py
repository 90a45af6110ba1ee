"""What the embedded servers share: ports that stay the same across runs, pid files,
spawning and stopping a server process, and readiness probes."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp

PORTS_FILE = "ports.json"
POLL_INTERVAL = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing is bound to right now (the kernel's pick)."""
    with socket.socket(family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def quote(value: str) -> str:
    # nats.conf strings share JSON's escapes for quotes and backslashes.
    return json.dumps(value, ensure_ascii=False)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(family(host), socket.SOCK_STREAM) as sock:
        # Both servers set SO_REUSEADDR, so a port held only by TIME_WAIT
        # connections of the previous run is free for them, and for us.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def recorded_port(data_dir: Path, key: str, host: str) -> int:
    # A second `up` keeps its URLs, so clients and configs written for the
    # first one still work; a port taken meanwhile is replaced and re-recorded.
    path = data_dir / PORTS_FILE
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    port = recorded.get(key)
    if isinstance(port, int) and port_is_free(host, port):
        return port
    taken = {value for other, value in recorded.items() if other != key}
    port = free_port(host)
    while port in taken:
        port = free_port(host)
    recorded[key] = port
    staging = path.with_name(PORTS_FILE + ".tmp")
    staging.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    staging.replace(path)
    return port


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def process_argv(pid: int) -> list[str]:
    """Command line of live process `pid`; empty if it is gone (or /proc is missing)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def process_name(pid: int) -> str | None:
    """Name of live process `pid`, or None if it is gone (or /proc is missing)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


async def spawn(
    argv: list[str], log_path: Path, *, cwd: Path, user: tuple[int, int] | None = None
) -> asyncio.subprocess.Process:
    uid, gid, groups = as_user(user)
    with log_path.open("ab") as log:
        # A session of its own: Ctrl-C in the terminal reaches only us, and
        # SIGKILL can take the server's whole process group with it.
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=groups,
        )


async def terminate(
    process: asyncio.subprocess.Process, sig: signal.Signals, timeout: float
) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def raise_if_exited(what: str, process: asyncio.subprocess.Process | None, log_path: Path) -> None:
    if process is None or process.returncode is None:
        return
    try:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        tail = "(no log)"
    raise RuntimeError(f"{what} exited with code {process.returncode}:\n{tail}")


async def http_ok(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def nats_greets(host: str, port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
    except (OSError, TimeoutError):
        return False
    try:
        return (await asyncio.wait_for(reader.readline(), 1)).startswith(b"INFO ")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def as_user(user: tuple[int, int] | None) -> tuple[int | None, int | None, list[int] | None]:
    """user=, group=, extra_groups= for subprocess: no supplementary groups, so none of root's."""
    if user is None:
        return None, None, None
    return user[0], user[1], []


class ServerProcess(abc.ABC):
    """The life of one server process spawned from `command()`: start, stop, signal.

    A server says its `name`, the signal that stops it promptly (`stop_signal`),
    how to get ready to spawn (`prepare`), who it runs as (`spawn_user`) and how
    to tell it is ready (`wait_ready`).
    """

    name = "server"
    stop_signal = signal.SIGTERM
    data_dir: Path
    log_path: Path
    _process: asyncio.subprocess.Process | None

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's argv."""

    @abc.abstractmethod
    async def wait_ready(self, timeout: float = 30) -> None:
        """Return once the server answers; raise TimeoutError after `timeout`."""

    async def prepare(self) -> None:  # noqa: B027 (a hook: most servers need nothing)
        """Anything to do before each spawn (nothing by default)."""

    def spawn_user(self) -> tuple[int, int] | None:
        return None

    async def start(self) -> None:
        """Prepare, spawn (output appended to `log_path`) and wait until it is ready."""
        if self._process is not None and self._process.returncode is None:
            raise RuntimeError(f"{self.name} is already running")
        await self.prepare()
        self._process = await spawn(
            self.command(), self.log_path, cwd=self.data_dir, user=self.spawn_user()
        )
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def stop(self, timeout: float = 10) -> None:
        """Stop the server started by start(): `stop_signal`, SIGKILL after `timeout` s."""
        if self._process is not None:
            await terminate(self._process, self.stop_signal, timeout)
            self._process = None

    def signal_now(self) -> None:
        """Signal the server without waiting: for an exiting process whose asyncio
        teardown did not run (a test session ended abruptly)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(self.stop_signal)
