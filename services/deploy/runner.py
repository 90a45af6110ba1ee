"""Run one deployment step as a process group of its own, streaming its output line by line.

User-supplied commands never reach a shell: a command string is split with
`shlex` into an argv list and executed directly. Each step runs in a new
session so that cancelling it (or its timeout) kills everything it started,
grandchildren included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from libs.errors import ValidationFailed

# What SIGTERM gets before SIGKILL; with the reaping below, a cancelled step is
# gone well within the 5 s that the API promises.
TERM_GRACE = 3.0
# Longest output line kept; asyncio's default of 64 KiB is short for a minified bundle's warnings.
_LINE_LIMIT = 1 << 20
# How long output still buffered in the pipe may take to arrive once the group is dead.
_DRAIN_TIMEOUT = 1.0
# How often a killed group is looked at until its last member is gone.
_GROUP_POLL = 0.02
# Exit codes a shell would give, so that a typo in a command reads like one.
_NOT_FOUND = 127
_NOT_EXECUTABLE = 126

LineSink = Callable[[str], Awaitable[None]]


class StepCancelled(Exception):
    """The step was cancelled; its whole process group has been killed."""


class StepTimedOut(Exception):
    """The step ran longer than its timeout; its whole process group has been killed."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"step timed out after {timeout:g}s")
        self.timeout = timeout


def parse_command(command: str | list[str], field: str = "$.build_command") -> list[str]:
    """Turn a user's command into an argv list, splitting a string like a POSIX shell would.

    Nothing is expanded or interpreted: `;`, `|`, `$(...)` and globs stay literal
    arguments. Raises ValidationFailed naming `field` for an empty or unparsable command.
    """
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ValidationFailed(f"command cannot be parsed: {exc}", field) from None
    else:
        argv = list(command)
        if not all(isinstance(arg, str) for arg in argv):
            raise ValidationFailed("command arguments must be strings", field)
    if not argv or not argv[0]:
        raise ValidationFailed("command must not be empty", field)
    if any("\x00" in arg for arg in argv):
        # execve would refuse it anyway, with a less helpful error.
        raise ValidationFailed("command must not contain NUL characters", field)
    return argv


async def run_step(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    on_line: LineSink,
    cancel: asyncio.Event | None = None,
    timeout: float | None = None,
    pgid_file: Path | None = None,
) -> int:
    """Run `argv` in `cwd` and return its exit code; stdout and stderr lines go to `on_line`.

    `env` is the child's whole environment: nothing of ours is inherited, so the
    agent's own secrets never reach a build. When `cancel` is set or `timeout`
    seconds pass, the step's process group gets SIGTERM, then SIGKILL after
    TERM_GRACE seconds, and StepCancelled or StepTimedOut is raised. Processes the
    step leaves behind in its group are killed when it exits, too.
    """
    loop = asyncio.get_running_loop()
    # Our own pipe rather than asyncio's: we can close its reading end ourselves
    # even when a process that escaped the group still holds the writing end.
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        code = _NOT_FOUND if isinstance(exc, FileNotFoundError) else _NOT_EXECUTABLE
        # The same error comes for a missing program and a missing cwd: name the culprit.
        culprit = exc.filename if exc.filename is not None else argv[0]
        await on_line(f"cannot run {argv[0]!r}: {exc.strerror or exc}: {culprit}")
        return code
    finally:
        os.close(write_fd)

    if pgid_file is not None:
        # Lets the next agent kill this group should we die before the step ends.
        record_group(pgid_file, process.pid)
    reader = asyncio.StreamReader(limit=_LINE_LIMIT, loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(read_fd, "rb", 0)
    )
    pump = asyncio.create_task(_pump(reader, on_line))
    exited = asyncio.create_task(process.wait())
    cancelled = asyncio.create_task(cancel.wait()) if cancel is not None else None
    try:
        outcome = await _first_of(exited, pump, cancelled, timeout)
        if outcome is not exited:
            await _terminate(process)
        # The leader is gone; kill what it left in its group so no stray
        # process keeps running (or keeps the pipe open) after the step.
        kill_group(process.pid, signal.SIGKILL)
        await wait_group_gone(process.pid, _DRAIN_TIMEOUT)
        await asyncio.wait({pump}, timeout=_DRAIN_TIMEOUT)
        if pump.done():
            pump.result()  # a failing on_line is the caller's error to see
        if outcome is None:
            raise StepTimedOut(timeout or 0.0)
        if outcome is cancelled:
            raise StepCancelled("step cancelled")
        return exited.result()
    finally:
        if process.returncode is None:
            # We were cancelled ourselves (task cancellation): leave nothing running.
            kill_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(exited)
                await wait_group_gone(process.pid, _DRAIN_TIMEOUT)
        if pgid_file is not None:
            pgid_file.unlink(missing_ok=True)
        for task in (pump, exited, cancelled):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            pump, exited, *([cancelled] if cancelled else []), return_exceptions=True
        )
        transport.close()


async def _first_of(
    exited: asyncio.Task[int],
    pump: asyncio.Task[None],
    cancelled: asyncio.Task[bool] | None,
    timeout: float | None,
) -> asyncio.Task[Any] | None:
    """Which ends the step: its exit, a failing output sink, a cancel, or (None) the timeout."""
    waiting: set[asyncio.Task[Any]] = {exited, pump}
    if cancelled is not None:
        waiting.add(cancelled)
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    while True:
        remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait(
            waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            return None
        for task in (exited, cancelled):
            if task is not None and task in done:
                return task
        if pump.exception() is not None:
            return pump
        # The output ended before the process did (it closed stdout): keep waiting.
        waiting.discard(pump)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    kill_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), TERM_GRACE)
    except TimeoutError:
        kill_group(process.pid, signal.SIGKILL)
        await process.wait()


async def _pump(reader: asyncio.StreamReader, on_line: LineSink) -> None:
    while True:
        try:
            line = await reader.readline()
        except ValueError:
            # Longer than _LINE_LIMIT: readline has discarded it.
            await on_line("<line too long, dropped>")
            continue
        if not line:
            return
        await on_line(line.decode(errors="replace").rstrip("\r\n"))


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to every process of group `pgid`; a group that is gone is no error."""
    # The group outlives its leader while any member lives, and its id cannot be
    # handed to another process meanwhile; once it is empty this is a harmless miss
    # (the kernel does not recycle a pid within the milliseconds that takes).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until group `pgid` has no live process left (signals take a moment); False on timeout.

    Zombies count as gone: they hold no port or file any more, and reaping them
    is up to their new parent (init), which may take its time.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while _has_live_member(pgid):
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(_GROUP_POLL)
    return True


def _has_live_member(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's group by now: ours is gone
    for process in psutil.process_iter(["status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(process.pid) == pgid:
                return True
    return False


def record_group(path: Path, pgid: int) -> None:
    """Write a step's process group, with its leader's start time to tell pid reuse apart."""
    try:
        started = psutil.Process(pgid).create_time()
    except psutil.Error:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pgid} {started}")


def reap_recorded_groups(directory: Path) -> list[int]:
    """Kill the step groups a dead agent left behind; the groups killed."""
    killed = []
    for path in directory.glob("*.pgid"):
        try:
            pgid_text, started_text = path.read_text().split()
            pgid, started = int(pgid_text), float(started_text)
        except ValueError:
            path.unlink(missing_ok=True)
            continue
        try:
            same = abs(psutil.Process(pgid).create_time() - started) < 1.0
        except psutil.NoSuchProcess:
            # The leader is gone but its group may live on; a pid is not handed out
            # again while a process group still has it as its id, so this is ours.
            same = True
        except psutil.Error:
            same = False
        if same:
            kill_group(pgid, signal.SIGKILL)
            killed.append(pgid)
        path.unlink(missing_ok=True)
    return killed
