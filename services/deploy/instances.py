"""A release's running processes: started, kept alive, measured, and adopted after an agent restart.

An instance writes its output to a log file rather than to a pipe of ours, and
runs in a session of its own, so that it survives the agent: a pipe would break
(SIGPIPE) and a shared session would be hung up when the agent dies. A small
JSON state file per instance lets the next agent find and adopt it.
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

from services.deploy.runner import kill_group, wait_group_gone

LineSink = Callable[[str], Awaitable[None]]
# How often the output file is read for new lines, and an adopted process (not
# our child, so no exit notification) is looked at.
_POLL_INTERVAL = 0.2
# A log is rotated (one old copy kept) when an instance starts while it is larger.
_LOG_ROTATE_BYTES = 16 << 20
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
        self._tail = _LogTail(log_path)
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
        _rotate(self.log_path)
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


class _LogTail:
    """New complete lines of a log file, read from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: int | None = None
        self._partial = b""
        self._pending: list[str] = []

    def reopen(self) -> None:
        # Only what is written from now on is news; older output was delivered (or is history).
        self.close()
        self._file = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600)
        os.lseek(self._file, 0, os.SEEK_END)

    def flush_into_buffer(self) -> None:
        # Before a restart rotates the file, keep what the dead process wrote last,
        # an unfinished last line included: nothing will complete it now.
        self._pending.extend(self._read())
        if self._partial:
            self._pending.append(self._partial.decode(errors="replace"))
            self._partial = b""

    def read_lines(self) -> list[str]:
        lines, self._pending = [*self._pending, *self._read()], []
        return lines

    def _read(self) -> list[str]:
        if self._file is None:
            return []
        data = self._partial
        while chunk := os.read(self._file, 1 << 16):
            data += chunk
        *complete, self._partial = data.split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in complete]

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        self._partial = b""


def _rotate(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))


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


BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
HEALTHY_UPTIME = 30.0


def restart_delay(previous: float | None, uptime: float) -> float:
    """Seconds to wait before restarting a crashed instance: 0.5 s doubling up to 10 s.

    `previous` is the delay before the last restart (None if there was none); an
    instance that stayed up for 30 s was healthy, and its next crash starts over.
    """
    if previous is None or uptime >= HEALTHY_UPTIME:
        return BACKOFF_FIRST
    return min(previous * 2, BACKOFF_MAX)


class InstanceSupervisor:
    """Keeps instances running, records them in `state_dir`, adopts them after an agent restart."""

    def __init__(
        self, state_dir: Path, *, on_log: Callable[[str, str], Awaitable[None]] | None = None
    ) -> None:
        """`on_log(instance_id, line)` gets each output line and each restart notice."""
        self.state_dir = state_dir
        self._on_log = on_log
        self._instances: dict[str, Instance] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}

    def get(self, instance_id: str) -> Instance | None:
        """The supervised instance with this id, if any."""
        return self._instances.get(instance_id)

    def instances(self) -> list[Instance]:
        """Every supervised instance."""
        return list(self._instances.values())

    async def start(self, spec: InstanceSpec) -> Instance:
        """Start `spec` and keep it running until stop()."""
        if spec.instance_id in self._instances:
            raise ValueError(f"instance {spec.instance_id!r} is already supervised")
        instance = self._new(spec)
        await instance.start()
        self._supervise(instance)
        return instance

    async def adopt(self, specs: list[InstanceSpec]) -> list[Instance]:
        """Supervise `specs` again after an agent restart, reusing what still runs.

        An instance whose recorded process is alive and runs the same command
        is adopted as it is (same pid); otherwise it is started anew. Recorded
        instances that `specs` does not name are stopped: nothing runs unsupervised.
        """
        wanted = {spec.instance_id: spec for spec in specs}
        result: list[Instance] = []
        for state in self._recorded():
            spec = wanted.get(state.instance_id)
            instance = self._new(spec or _placeholder(state, self.state_dir))
            alive = instance.adopt(state)
            if alive and spec is not None and state.argv_hash == spec.argv_hash:
                self._supervise(instance)
                result.append(instance)
                continue
            # Dead, unwanted, or running an outdated command: end it, start the spec anew.
            await (instance.stop() if alive else instance.detach())
            self._state_path(state.instance_id).unlink(missing_ok=True)
            if spec is not None:
                fresh = self._new(spec)
                fresh.restarts = state.restarts + (0 if alive else 1)
                await fresh.start()
                self._supervise(fresh)
                result.append(fresh)
        for spec in specs:
            if spec.instance_id not in self._instances:
                result.append(await self.start(spec))
        return result

    async def stop(self, instance_id: str, timeout: float = 5.0) -> None:
        """Stop an instance's whole process group and forget it."""
        instance = self._instances.pop(instance_id, None)
        if instance is None:
            return
        await instance.stop(timeout)
        watcher = self._watchers.pop(instance_id, None)
        if watcher is not None:
            await asyncio.gather(watcher, return_exceptions=True)
        self._state_path(instance_id).unlink(missing_ok=True)

    async def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every instance (concurrently, so the whole takes about `timeout` at most)."""
        await asyncio.gather(*(self.stop(name, timeout) for name in list(self._instances)))

    async def detach(self) -> None:
        """Stop supervising, leaving instances running and recorded for the next agent to adopt."""
        for watcher in self._watchers.values():
            watcher.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        await asyncio.gather(*(instance.detach() for instance in self._instances.values()))
        self._watchers.clear()
        self._instances.clear()

    def _new(self, spec: InstanceSpec) -> Instance:
        name = spec.instance_id
        # Records and logs may name ports and paths: for the agent's user only.
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

        async def on_log(line: str) -> None:
            if self._on_log is not None:
                await self._on_log(name, line)

        return Instance(spec, log_path=self.state_dir / f"{name}.log", on_log=on_log)

    def _supervise(self, instance: Instance) -> None:
        name = instance.spec.instance_id
        self._instances[name] = instance
        self._record(instance)
        self._watchers[name] = asyncio.create_task(self._watch(instance), name=f"supervise {name}")

    async def _watch(self, instance: Instance) -> None:
        name = instance.spec.instance_id
        delay: float | None = None
        while True:
            code = await instance.wait()
            if instance.stop_requested.is_set():
                return
            await instance.kill_leftovers()
            delay = restart_delay(delay, instance.uptime())
            status = "exited" if code is None else f"exited with code {code}"
            await self._say(name, f"{status}, restarting in {delay:g}s")
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(instance.stop_requested.wait(), delay)
                if instance.stop_requested.is_set():
                    return
                try:
                    await instance.start()
                    break
                except OSError as exc:
                    delay = restart_delay(delay, 0.0)
                    await self._say(name, f"failed to start ({exc}), retrying in {delay:g}s")
            if instance.stop_requested.is_set():
                # stop() ran while we were spawning and could not see this process.
                await instance.stop()
                return
            instance.restarts += 1
            self._record(instance)

    async def _say(self, name: str, text: str) -> None:
        if self._on_log is not None:
            await self._on_log(name, f"[supervisor] {text}")

    def _state_path(self, instance_id: str) -> Path:
        return self.state_dir / f"{instance_id}.json"

    def _record(self, instance: Instance) -> None:
        path = self._state_path(instance.spec.instance_id)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(msgspec.json.encode(instance.state()))
        # Atomic: an agent killed mid-write leaves the previous record, never half of one.
        os.replace(temporary, path)

    def _recorded(self) -> list[InstanceState]:
        states: list[InstanceState] = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                states.append(msgspec.json.decode(path.read_bytes(), type=InstanceState))
            except (OSError, msgspec.DecodeError):
                path.unlink(missing_ok=True)  # unreadable: nothing to adopt from it
        return states


def _placeholder(state: InstanceState, state_dir: Path) -> InstanceSpec:
    # Enough of a spec to adopt and stop a recorded process whose command we no longer know.
    return InstanceSpec(
        instance_id=state.instance_id,
        release_id=state.release_id,
        argv=("?",),
        cwd=state_dir,
        port=state.port,
    )
