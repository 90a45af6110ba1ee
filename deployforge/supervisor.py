"""Keep the processes of `deployforge up` running, and stop them all cleanly.

Each child runs in a process group of its own, its output is prefixed with its
name, and a child that dies is restarted with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TextIO

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0
# A child that stayed up this long was healthy; its next crash starts the backoff over.
_HEALTHY_UPTIME = 30.0
# Longest output line kept; asyncio's default of 64 KiB is short for a JSON log line.
_LINE_LIMIT = 1 << 20
# How long a dead child's last output may take to arrive before "exited" is logged.
_DRAIN_TIMEOUT = 1.0


@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    restart: bool
    user: tuple[int, int] | None
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    watcher: asyncio.Task[None] | None = None
    pump: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """Run named child processes, restart the ones that die, stop them in reverse order."""

    def __init__(self, *, stop_timeout: float = 8.0, out: TextIO | None = None) -> None:
        """`stop_timeout` bounds the whole of stop(); `out` (default sys.stdout) gets the output."""
        self.stop_timeout = stop_timeout
        self.restarts: dict[str, int] = {}
        self._out = out if out is not None else sys.stdout
        self._children: dict[str, _Child] = {}
        self._order: list[str] = []  # first start of each child, for stopping in reverse
        self._pumps: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()

    def add(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        restart: bool = True,
        user: tuple[int, int] | None = None,
    ) -> None:
        """Register a child; `env` is layered over our own environment, `user` is (uid, gid)."""
        if name in self._children:
            raise ValueError(f"child {name!r} already added")
        self._children[name] = _Child(name, list(argv), dict(env or {}), restart, user)
        self.restarts[name] = 0

    async def start(self, name: str) -> None:
        """Spawn child `name` and keep it running until stop()."""
        child = self._children[name]
        if self._stopping.is_set():
            raise RuntimeError("supervisor is stopping")
        if child.watcher is not None and not child.watcher.done():
            raise RuntimeError(f"child {name!r} is already running")
        await self._spawn(child)
        if name not in self._order:
            self._order.append(name)
        child.watcher = asyncio.create_task(self._watch(child), name=f"supervise {name}")

    async def start_all(self) -> None:
        """Start every child in the order they were added."""
        for name in self._children:
            await self.start(name)

    async def run_until_stopped(self) -> None:
        """Return once stop() has finished."""
        await self._stopped.wait()

    async def stop(self) -> None:
        """SIGTERM each child's group in reverse start order, SIGKILL what is left at the deadline.

        Children are stopped one after another so that servers outlive their
        clients; the whole stop takes at most about `stop_timeout` seconds.
        """
        if self._stopping.is_set():
            await self._stopped.wait()
            return
        self._stopping.set()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.stop_timeout
            running = [self._children[name] for name in reversed(self._order)]
            for child in running:
                process = child.process
                if process is None or process.returncode is not None:
                    continue
                _signal_group(process, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), max(deadline - loop.time(), 0))
            for child in running:
                if child.process is not None and child.process.returncode is None:
                    _signal_group(child.process, signal.SIGKILL)
            watchers = [child.watcher for child in running if child.watcher is not None]
            await asyncio.gather(*watchers, return_exceptions=True)
            # Grandchildren that left the group could still hold a pipe open.
            if self._pumps:
                await asyncio.wait(self._pumps, timeout=_DRAIN_TIMEOUT)
            for pump in list(self._pumps):
                pump.cancel()
            await asyncio.gather(*self._pumps, return_exceptions=True)
        finally:
            # Even if stop() itself is cancelled, nobody may wait forever on it.
            self._stopped.set()

    def pid(self, name: str) -> int | None:
        """Pid of child `name` while it runs, else None."""
        process = self._children[name].process
        if process is None or process.returncode is not None:
            return None
        return process.pid

    async def _spawn(self, child: _Child) -> None:
        uid = gid = None
        groups: list[int] | None = None
        if child.user is not None:
            uid, gid = child.user
            groups = []  # none of root's supplementary groups either
        # Python children would otherwise block-buffer their output into our pipe.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **child.env}
        process = await asyncio.create_subprocess_exec(
            *child.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session: Ctrl-C reaches only us, and we can signal its whole group.
            start_new_session=True,
            limit=_LINE_LIMIT,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        child.process = process
        child.started_at = asyncio.get_running_loop().time()
        assert process.stdout is not None
        child.pump = asyncio.create_task(self._pump(child.name, process.stdout))
        self._pumps.add(child.pump)
        child.pump.add_done_callback(self._pumps.discard)

    async def _watch(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        backoff = _BACKOFF_FIRST
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if child.pump is not None:
                await asyncio.wait({child.pump}, timeout=_DRAIN_TIMEOUT)
            if self._stopping.is_set():
                return
            if not child.restart:
                self._say(f"{child.name} exited with code {code}")
                return
            if loop.time() - child.started_at >= _HEALTHY_UPTIME:
                backoff = _BACKOFF_FIRST
            self._say(f"{child.name} exited with code {code}, restarting in {backoff:g}s")
            while True:
                if await _set_within(self._stopping, backoff):
                    return
                backoff = min(backoff * 2, _BACKOFF_MAX)
                try:
                    await self._spawn(child)
                    break
                except OSError as exc:
                    self._say(f"{child.name} failed to start ({exc}), retrying in {backoff:g}s")
            self.restarts[child.name] += 1
            if self._stopping.is_set():
                # stop() began while we were spawning and may not have seen this process.
                _signal_group(child.process, signal.SIGKILL)
                await child.process.wait()
                return

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                # Longer than _LINE_LIMIT: readline has discarded it.
                self._emit(name, "<line too long, dropped>")
                continue
            if not line:
                return
            self._emit(name, line.decode(errors="replace").rstrip("\r\n"))

    def _say(self, text: str) -> None:
        self._emit("supervisor", text)

    def _emit(self, name: str, text: str) -> None:
        # If our own output is gone there is nobody left to tell.
        with contextlib.suppress(OSError, ValueError):
            self._out.write(f"{name} | {text}\n")
            self._out.flush()


async def _set_within(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # Only while the leader is unreaped: after that its pid, and so the group
    # id, may already belong to someone else.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
