"""Where each running instance's state is published: a KV bucket.

The agent that runs an instance writes its report (pid, port, release,
started_at, restarts, CPU, memory) under `<service>.<environment>.<instance>`
every few seconds and deletes it when the instance stops. The gateway lists a
service's instances from it, and the drift service will compare it with what
was deployed. A report is an observation, not truth: `observed_at` says how
fresh it is.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from libs.kv import bucket_name as named_bucket
from libs.kv import file_bucket

REPORT_SECONDS = 5.0
# What an instance id may be (the agent names them `<deployment>-<n>` and
# `<release>-<ms>-<n>`): one token of a key, never a wildcard.
INSTANCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class HealthCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The last probe of an instance's health-check path, made by its agent."""

    ok: bool
    status_code: int | None
    latency_ms: float
    checked_at: datetime
    error: str | None = None


class InstanceReport(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    service_id: str
    environment_id: str
    release_id: str
    agent_id: str
    pid: int
    port: int
    address: str
    status: str  # running | restarting | stopped (on request; its release is kept)
    started_at: datetime
    uptime_seconds: float
    restarts: int
    cpu_percent: float
    memory_rss: int
    observed_at: datetime
    # None: not probed (not running, or an agent from before checks were reported).
    check: HealthCheck | None = None

    @property
    def key(self) -> str:
        return f"{self.service_id}.{self.environment_id}.{self.instance_id}"


def bucket_name(namespace: str) -> str:
    return named_bucket(namespace, "instances")


async def bucket(js: JetStreamContext, namespace: str, replicas: int = 1) -> KeyValue:
    return await file_bucket(js, bucket_name(namespace), replicas)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(InstanceReport)


async def publish(kv: KeyValue, report: InstanceReport) -> None:
    await kv.put(report.key, _encoder.encode(report))


async def remove(kv: KeyValue, key: str) -> None:
    with contextlib.suppress(nats.js.errors.KeyNotFoundError):
        await kv.delete(key)


async def of_service(kv: KeyValue, service_id: str) -> list[InstanceReport]:
    """Every instance of a service reported now, in any environment."""
    return await _reported(kv, f"{service_id}.>")


async def of_environment(kv: KeyValue, environment_id: str) -> list[InstanceReport]:
    """Every instance reported now in an environment, of any service."""
    if not INSTANCE_ID.fullmatch(environment_id):
        return []  # never a key: it would be a wildcard or several tokens
    return await _reported(kv, f"*.{environment_id}.*")


async def everywhere(kv: KeyValue) -> list[InstanceReport]:
    """Every instance reported now, of every service, by service, environment and id."""
    reports = await _reported(kv, ">")
    return sorted(reports, key=lambda r: r.key)


async def find(kv: KeyValue, instance_id: str) -> InstanceReport | None:
    """The report of one instance, whichever its service and environment."""
    if not INSTANCE_ID.fullmatch(instance_id):
        return None  # never a key: it would be a wildcard or several tokens
    reports = await _reported(kv, f"*.*.{instance_id}")
    return reports[0] if reports else None


# After the watcher's end-of-initial-values marker, how long to keep reading: an
# agent rewriting a report while we read removes its old revision before the new
# one is delivered, which can end the initial values early.
_SETTLE_SECONDS = 0.05


async def _reported(kv: KeyValue, keys: str) -> list[InstanceReport]:
    watcher = await kv.watch(keys, ignore_deletes=True)
    latest: dict[str, InstanceReport] = {}
    timeout = 2.0
    try:
        while True:
            try:
                entry = await watcher.updates(timeout=timeout)  # type: ignore[no-untyped-call]
            except nats.errors.TimeoutError:
                break
            if entry is None:  # the initial values are delivered; take stragglers
                timeout = _SETTLE_SECONDS
                continue
            if entry.value:
                latest[entry.key] = _decoder.decode(entry.value)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return sorted(latest.values(), key=lambda r: (r.environment_id, r.instance_id))
