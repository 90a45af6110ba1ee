"""The steps of one deployment: fetch, build, the pipeline's steps, then start,
health_check, switch and cleanup.

Fetch and build make a release: a checkout at the ref, built, kept in the
agent's work directory (a rollback reuses one kept from before instead). The
release's instances then start beside the live ones; once healthy, the stable
address moves to them and the old instances drain and stop. Every step is
reported to the deploy service; a failing one raises StepFailed.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from libs.ids import new_id
from services.deploy import logs, manifest, release_files
from services.deploy.commands import JobSpec
from services.deploy.events import PipelineStepSpec
from services.deploy.health import free_port, health_url, wait_healthy
from services.deploy.instances import InstanceSpec
from services.deploy.routes import Route, base_env
from services.deploy.routing import Routing
from services.deploy.runner import StepCancelled, StepTimedOut, run_step
from services.deploy.source import CheckoutFailed, checkout

Step = Callable[[str, Callable[[], Awaitable[None]]], Awaitable[None]]
Line = Callable[[str], Awaitable[None]]


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


class DeploymentSteps:
    def __init__(self, routing: Routing) -> None:
        self.routing = routing
        self.settings = routing.settings
        self.work = routing.work

    async def run(
        self, spec: JobSpec, writer: logs.LogWriter, cancel: asyncio.Event
    ) -> tuple[str | None, str, str]:
        """Run every step: the commit deployed (if known), the release, its address."""
        route_key = f"{spec.service_id}:{spec.environment_id}"
        releases = self.work / "releases" / spec.service_id
        releases.mkdir(parents=True, exist_ok=True)

        async def step(name: str, work: Callable[[], Awaitable[None]]) -> None:
            if cancel.is_set():
                raise StepCancelled(name)
            writer.step = name
            await self.routing.deploy.report_step(spec.deployment_id, name, "running")
            begun = time.monotonic()
            await work()
            await self.routing.deploy.report_step(
                spec.deployment_id, name, "success", message=f"{time.monotonic() - begun:.2f}s"
            )

        async def line(text: str) -> None:
            await writer.write(text, datetime.now(UTC))

        commit: str | None = None
        if spec.reuse_release_id is not None:
            release_id = spec.reuse_release_id
            source = releases / release_id

            async def reuse() -> None:
                nonlocal spec
                if not source.is_dir():
                    raise StepFailed("fetch", f"release {release_id} is no longer kept")
                await line(f"reusing release {release_id}: no fetch, no build")
                spec = await with_manifest(spec, source, line)

            await step("fetch", reuse)
        else:
            release_id = new_id("rel")
            source = releases / release_id

            async def fetch() -> None:
                nonlocal commit, spec
                try:
                    commit = await checkout(
                        spec.repository_url,
                        spec.ref,
                        source,
                        on_line=line,
                        cancel=cancel,
                        timeout=300,
                    )
                except CheckoutFailed as exc:
                    raise StepFailed("fetch", str(exc)) from None
                await line(f"checked out {spec.ref} at {commit}")
                (source / ".deployforge-commit").write_text(commit)
                spec = await with_manifest(spec, source, line)

            await step("fetch", fetch)

            async def build() -> None:
                if not spec.build_command:
                    await line("no build command")
                    return
                env = {**base_env(source), **spec.env, **self._script_env(spec)}
                try:
                    code = await run_step(
                        spec.build_command,
                        cwd=source,
                        env=env,
                        on_line=line,
                        cancel=cancel,
                        timeout=self.settings.build_timeout_seconds,
                        pgid_file=self.work / "steps" / f"{spec.deployment_id}.pgid",
                    )
                except StepTimedOut:
                    raise StepFailed("build", "the build timed out") from None
                if code != 0:
                    raise StepFailed("build", f"the build command exited with {code}")

            await step("build", build)
            for pipeline_step in spec.pipeline_steps:
                await step(
                    pipeline_step.name,
                    self._pipeline_step(spec, pipeline_step, source, line, cancel),
                )
            # What drift scans compare the release with: its files as the build left them.
            files = await asyncio.to_thread(release_files.record, self.work, release_id, source)
            await line(f"recorded the checksums of {files} files")
        if commit is None and (source / ".deployforge-commit").exists():
            commit = (source / ".deployforge-commit").read_text().strip()

        async with self.routing.lock(route_key):
            return await self._release(spec, route_key, release_id, source, step, line, commit)

    async def _release(
        self,
        spec: JobSpec,
        route_key: str,
        release_id: str,
        source: Path,
        step: Step,
        line: Line,
        commit: str | None,
    ) -> tuple[str | None, str, str]:
        routing = self.routing
        route = routing.routes.get(route_key) or Route(listen_port=free_port())
        old_ids, old_ports = list(route.instances), list(route.ports)
        new_ids: list[str] = []
        new_ports: list[int] = []
        if spec.strategy == "recreate" and old_ids:
            for instance_id in old_ids:
                await routing.supervisor.stop(instance_id)
            old_ids, old_ports = [], []

        async def start() -> None:
            for n in range(spec.replicas):
                port = (
                    spec.port
                    if spec.port and spec.replicas == 1 and not old_ports
                    else (free_port())
                )
                instance_id = f"{spec.deployment_id}-{n}"
                env = {
                    **base_env(source),
                    **spec.env,
                    "PORT": str(port),
                    "DEPLOYFORGE_DEPLOYMENT_ID": spec.deployment_id,
                }
                routing.note_instance(instance_id, route_key)
                await routing.supervisor.start(
                    InstanceSpec(
                        instance_id=instance_id,
                        release_id=release_id,
                        argv=tuple(spec.run_command),
                        cwd=source,
                        port=port,
                        env=env,
                    )
                )
                new_ids.append(instance_id)
                new_ports.append(port)
                await line(f"started {instance_id} on port {port}")

        async def health() -> None:
            for port in new_ports:
                url = health_url(port, spec.health_check_path)
                if not await wait_healthy(
                    url, timeout=self.settings.health_timeout_seconds, on_line=line
                ):
                    raise StepFailed("health_check", f"{url} did not answer in time")
            await line("healthy")

        async def switch() -> None:
            proxy = await routing.proxies.ensure(route_key, route.listen_port)
            proxy.set_upstream(new_ports[0])
            await line(
                f"http://{self.settings.proxy_host}:{route.listen_port} now serves {release_id}"
            )

        async def cleanup() -> None:
            proxy = routing.proxies.get(route_key)
            for port in old_ports:
                if proxy is not None:
                    await proxy.drain(port, timeout=self.settings.drain_seconds)
            await routing.stop_instances(route_key, old_ids)
            if old_ids:
                await line(f"stopped {', '.join(old_ids)}")
            self._prune(source.parent, keep={release_id})

        try:
            await step("start", start)
            await step("health_check", health)
            await step("switch", switch)
        except BaseException:
            # The new release never took traffic: stop it, the old one keeps serving.
            for instance_id in new_ids:
                await routing.supervisor.stop(instance_id)
            raise
        routing.routes[route_key] = Route(
            listen_port=route.listen_port,
            release_id=release_id,
            instances=new_ids,
            ports=new_ports,
            service_id=spec.service_id,
            argv=list(spec.run_command),
            argv_from_manifest="run_command" in spec.manifest_fields,
            cwd=str(source),
            health_check_path=spec.health_check_path,
            replicas=spec.replicas,
            deployment_id=spec.deployment_id,
            env_defaults=spec.manifest_env,
            env_names=sorted(spec.env),
        )
        routing.save_routes()
        await routing.report_instances()
        await step("cleanup", cleanup)
        return commit, release_id, f"http://{self.settings.proxy_host}:{route.listen_port}"

    def _pipeline_step(
        self,
        spec: JobSpec,
        pipeline_step: PipelineStepSpec,
        source: Path,
        line: Line,
        cancel: asyncio.Event,
    ) -> Callable[[], Awaitable[None]]:
        """A pipeline's step: its command in the checkout, with the run's parameters."""

        async def run() -> None:
            parameters = {f"PARAM_{k.upper()}": v for k, v in spec.parameters.items()}
            env = {**base_env(source), **spec.env, **self._script_env(spec), **parameters}
            try:
                code = await run_step(
                    pipeline_step.command,
                    cwd=source,
                    env=env,
                    on_line=line,
                    cancel=cancel,
                    timeout=self.settings.build_timeout_seconds,
                    pgid_file=self.work / "steps" / f"{spec.deployment_id}.pgid",
                )
            except StepTimedOut:
                raise StepFailed(pipeline_step.name, "the step timed out") from None
            if code != 0:
                raise StepFailed(pipeline_step.name, f"{pipeline_step.name} exited with {code}")

        return run

    def _script_env(self, spec: JobSpec) -> dict[str, str]:
        """What a build script needs to report its own steps (fastDeploy)."""
        env = {
            "DEPLOYFORGE_DEPLOYMENT_ID": spec.deployment_id,
            "DEPLOYFORGE_API_URL": self.settings.api_url,
        }
        if spec.deployment_token:
            env["DEPLOYFORGE_DEPLOYMENT_TOKEN"] = spec.deployment_token
        return env

    def _prune(self, releases: Path, keep: set[str]) -> None:
        """Keep the newest `keep_releases` releases of a service, for instant rollbacks."""
        live = {r.release_id for r in self.routing.routes.values() if r.release_id}
        dirs = sorted(
            (p for p in releases.iterdir() if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in dirs[self.settings.keep_releases :]:
            if old.name not in keep | live:
                shutil.rmtree(old, ignore_errors=True)
                release_files.forget(self.work, old.name)


async def with_manifest(spec: JobSpec, source: Path, line: Line) -> JobSpec:
    """The job as the checkout's deployforge.yml says, if it has one."""
    try:
        found = manifest.load(source)
    except manifest.ManifestInvalid as exc:
        raise StepFailed("fetch", str(exc)) from None
    if found is None:
        return spec
    name, declared = found
    await line(f"using {name}")
    return manifest.apply(spec, declared)
