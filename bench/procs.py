"""DeployForge processes run by a benchmark, each in its own OS process.

`python -m services.auth.main` and `python -m gateway.main` read their
settings from `DEPLOYFORGE_*` variables, exactly as in production, so the
service under test never shares an event loop (or a core's worth of CPU)
with the benchmark's load generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from bench.machine import ROOT

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Child:
    """`python -m <module>` with a DeployForge environment, output to `<name>.log`."""

    def __init__(
        self,
        name: str,
        module: str,
        env: Mapping[str, str],
        log_dir: Path,
        args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", module, *args]
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process.pid

    async def start(self) -> None:
        # Only our variables, so a DEPLOYFORGE_* of the caller's shell cannot leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFORGE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        """Raise with the end of the log if the process has exited."""
        if self._process is not None and self._process.returncode is None:
            return
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{self.name} is not running; end of {self.log_path}:\n{tail}")

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (both entry points drain on it), SIGKILL after `timeout`."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        return process_cpu_seconds(self.pid)


@contextlib.asynccontextmanager
async def running(
    name: str,
    module: str,
    env: Mapping[str, str],
    log_dir: Path,
    args: Sequence[str] = (),
) -> AsyncIterator[Child]:
    child = Child(name, module, env, log_dir, args)
    await child.start()
    try:
        yield child
    finally:
        await child.stop()


def process_cpu_seconds(pid: int) -> float:
    # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) / _TICKS for v in first[:8]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    what: str,
    *,
    children: Sequence[Child] = (),
    timeout: float = 30.0,
    interval: float = 0.1,
) -> None:
    """Poll `check` until it is true; fail early if one of `children` dies."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            child.check_alive()
        with contextlib.suppress(Exception):
            if await check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout:g} s")
        await asyncio.sleep(interval)
