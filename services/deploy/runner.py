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

from libs.errors import ValidationFailed

# What SIGTERM gets before SIGKILL; with the reaping below, a cancelled step is
# gone well within the 5 s that the API promises.
TERM_GRACE = 3.0
# Longest output line kept; asyncio's default of 64 KiB is short for a minified bundle's warnings.
_LINE_LIMIT = 1 << 20
# How long output still buffered in the pipe may take to arrive once the group is dead.
_DRAIN_TIMEOUT = 1.0
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
        await on_line(f"cannot run {argv[0]!r}: {exc.strerror or exc}")
        return code
    finally:
        os.close(write_fd)

    reader = asyncio.StreamReader(limit=_LINE_LIMIT, loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(read_fd, "rb", 0)
    )
    pump = asyncio.create_task(_pump(reader, on_line))
    exited = asyncio.create_task(process.wait())
    cancelled = asyncio.create_task(cancel.wait()) if cancel is not None else None
    try:
        waiting = {exited} if cancelled is None else {exited, cancelled}
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if exited not in done:
            await _terminate(process)
        # The leader is gone; kill what it left in its group so no stray
        # process keeps running (or keeps the pipe open) after the step.
        _kill_group(process.pid, signal.SIGKILL)
        await asyncio.wait({pump}, timeout=_DRAIN_TIMEOUT)
        if exited not in done:
            if cancelled is not None and cancelled in done:
                raise StepCancelled("step cancelled")
            raise StepTimedOut(timeout or 0.0)
        if pump.done():
            pump.result()  # a failing on_line is the caller's error to see
        return exited.result()
    finally:
        if process.returncode is None:
            # We were cancelled ourselves (task cancellation): leave nothing running.
            _kill_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(exited)
        for task in (pump, exited, cancelled):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            pump, exited, *([cancelled] if cancelled else []), return_exceptions=True
        )
        transport.close()


async def _terminate(process: asyncio.subprocess.Process) -> None:
    _kill_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), TERM_GRACE)
    except TimeoutError:
        _kill_group(process.pid, signal.SIGKILL)
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


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    # The group outlives its leader while any member lives, and its id cannot be
    # handed to another process meanwhile; once it is empty this is a harmless miss
    # (the kernel does not recycle a pid within the milliseconds that takes).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
