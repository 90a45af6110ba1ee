"""A release's running processes: started, kept alive, measured, and adopted after an agent restart.

An instance writes its output to a log file rather than to a pipe of ours, and
runs in a session of its own, so that it survives the agent: a pipe would break
(SIGPIPE) and a shared session would be hung up when the agent dies. A small
JSON state file per instance lets the next agent find and adopt it; the
supervisor (supervisor.py) keeps them running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import psutil  # type: ignore[import-untyped]

from services.deploy.log_tail import LogTail, rotate
from services.deploy.runner import kill_group, wait_group_gone

LineSink = Callable[[str], Awaitable[None]]
# How often the output file is read for new lines, and an adopted process (not
# our child, so no exit notification) is looked at.
_POLL_INTERVAL = 0.2
# A log is rotated (one old copy kept) when an instance starts while it is larger.
# Two reads of one process's start time may differ by a clock tick.
_CREATE_TIME_SLACK = 1.0
# How long SIGKILLed processes may take to be gone (they must be scheduled to die).
_LEFTOVER_TIMEOUT = 2.0
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class InstanceSpec:
    """What to run: `argv` in `cwd` with exactly `env` plus `PORT`, for a release."""

    instance_id: str
    release_id: str
    argv: tuple[str, ...]
    cwd: Path
    port: int
    env: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not _INSTANCE_ID.match(self.instance_id):
            raise ValueError(f"instance id {self.instance_id!r} is not a safe file name")
        if not self.argv:
            raise ValueError("argv must not be empty")

    @property
    def argv_hash(self) -> str:
        """A digest of the command, to tell whether a recorded process runs this spec."""
        return hashlib.sha256(json.dumps(list(self.argv)).encode()).hexdigest()


class InstanceState(msgspec.Struct, frozen=True, kw_only=True):
    """What the state file of an instance records (no environment: it may hold secrets)."""

    instance_id: str
    release_id: str
    pid: int
    pgid: int
    port: int
    started_at: float  # wall clock, for uptime
    create_time: float  # the kernel's start time of pid: tells pid reuse apart
    restarts: int
    argv_hash: str


@dataclass(frozen=True)
class InstanceStats:
    """Resource use of an instance's whole process tree."""

    cpu_percent: float
    memory_rss: int


class Instance:
    """One supervised process group running a spec, started by us or adopted."""

    def __init__(self, spec: InstanceSpec, *, log_path: Path, on_log: LineSink | None = None):
        self.spec = spec
        self.log_path = log_path
        self.pid = 0
        self.started_at = 0.0
        self.restarts = 0
        self.adopted = False
        self._on_log = on_log
        self._process: asyncio.subprocess.Process | None = None
        self._leader: psutil.Process | None = None
        self._stats_cache: dict[int, psutil.Process] = {}
        self._tail = LogTail(log_path)
        self._tail_task: asyncio.Task[None] | None = None
        self.stop_requested = asyncio.Event()

    @property
    def port(self) -> int:
        """The port the instance was told to listen on."""
        return self.spec.port

    @property
    def pgid(self) -> int:
        """Its process group: it leads a session of its own, so this is its pid."""
        return self.pid

    @property
    def running(self) -> bool:
        """Whether the group leader is alive."""
        if self._process is not None:
            return self._process.returncode is None
        return self._leader is not None and _alive(self._leader)

    async def start(self) -> None:
        """Spawn the process (again, after a crash) with its output appended to the log file."""
        self._tail.flush_into_buffer()
        rotate(self.log_path)
        self._tail.reopen()
        env = {**self.spec.env, "PORT": str(self.spec.port)}
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                cwd=self.spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
        self._process = process
        self.pid = process.pid
        self.started_at = time.time()
        self.adopted = False
        self._leader = _process_or_none(process.pid)
        self._ensure_tailing()

    def adopt(self, state: InstanceState) -> bool:
        """Take over the live process `state` records; False if it is gone or not that process."""
        leader = _process_or_none(state.pid)
        if leader is None or not _alive(leader):
            return False
        try:
            same = abs(leader.create_time() - state.create_time) <= _CREATE_TIME_SLACK
            same = same and os.getpgid(state.pid) == state.pgid == state.pid
        except (psutil.Error, ProcessLookupError):
            return False
        if not same:
            return False  # the pid was reused by an unrelated process
        self._leader = leader
        self.pid = state.pid
        self.started_at = state.started_at
        self.restarts = state.restarts
        self.adopted = True
        self._tail.reopen()
        self._ensure_tailing()
        return True

    def state(self) -> InstanceState:
        """What to record so that a later agent can adopt this instance."""
        create_time = 0.0
        if self._leader is not None:
            with contextlib.suppress(psutil.Error):
                create_time = float(self._leader.create_time())
        return InstanceState(
            instance_id=self.spec.instance_id,
            release_id=self.spec.release_id,
            pid=self.pid,
            pgid=self.pgid,
            port=self.spec.port,
            started_at=self.started_at,
            create_time=create_time,
            restarts=self.restarts,
            argv_hash=self.spec.argv_hash,
        )

    def uptime(self) -> float:
        """Seconds since the current process started."""
        return max(time.time() - self.started_at, 0.0)

    async def wait(self) -> int | None:
        """Wait for the group leader to exit; its exit code, or None for an adopted process."""
        if self._process is not None:
            return await self._process.wait()
        # Not our child: no exit notification comes, so look every so often.
        while self._leader is not None and _alive(self._leader):  # noqa: ASYNC110
            await asyncio.sleep(_POLL_INTERVAL)
        return None

    def stats(self) -> InstanceStats:
        """CPU percent (since the last call) and resident memory of the process tree."""
        if self._leader is None or not self.running:
            return InstanceStats(cpu_percent=0.0, memory_rss=0)
        try:
            tree = [self._leader, *self._leader.children(recursive=True)]
        except psutil.Error:
            return InstanceStats(cpu_percent=0.0, memory_rss=0)
        cpu, rss = 0.0, 0
        seen: dict[int, psutil.Process] = {}
        for proc in tree:
            # cpu_percent measures since the previous call on the same object.
            cached = self._stats_cache.get(proc.pid, proc)
            with contextlib.suppress(psutil.Error):
                cpu += float(cached.cpu_percent(interval=None))
                rss += int(cached.memory_info().rss)
                seen[proc.pid] = cached
        self._stats_cache = seen
        return InstanceStats(cpu_percent=cpu, memory_rss=rss)

    async def kill_leftovers(self) -> None:
        """SIGKILL what the dead leader left in its group (a child still holding the port)."""
        if not self.running and self.pid:
            kill_group(self.pgid, signal.SIGKILL)
            await wait_group_gone(self.pgid, _LEFTOVER_TIMEOUT)

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL it after `timeout` seconds; deliver the last lines."""
        self.stop_requested.set()
        if self.running:
            kill_group(self.pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), timeout)
            except TimeoutError:
                kill_group(self.pgid, signal.SIGKILL)
                await self.wait()
        await self.kill_leftovers()
        await self.detach()

    async def detach(self) -> None:
        """Stop following the output, leaving the processes running."""
        if self._tail_task is not None:
            self._tail_task.cancel()
            await asyncio.gather(self._tail_task, return_exceptions=True)
            self._tail_task = None
        await self._deliver()
        self._tail.close()

    def _ensure_tailing(self) -> None:
        if self._tail_task is None or self._tail_task.done():
            self._tail_task = asyncio.create_task(
                self._follow(), name=f"log {self.spec.instance_id}"
            )

    async def _follow(self) -> None:
        while True:
            await self._deliver()
            await asyncio.sleep(_POLL_INTERVAL)

    async def _deliver(self) -> None:
        for line in self._tail.read_lines():
            if self._on_log is not None:
                await self._on_log(line)


def _process_or_none(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _alive(process: psutil.Process) -> bool:
    # is_running() also checks the start time, so a reused pid reads as dead.
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
