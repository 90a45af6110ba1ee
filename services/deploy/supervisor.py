"""Keeping a service's instances running: restart with backoff, records on disk, and
adoption of the instances an earlier agent started."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from services.deploy.instances import Instance, InstanceSpec, InstanceState

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
