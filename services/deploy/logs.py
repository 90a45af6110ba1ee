"""Deployment logs: every line a step prints, on a JetStream stream of their own.

Subject `<ns>.logs.<deployment_id>`; each message is one `LogLine` as JSON.
Kept for `LOG_RETENTION_DAYS`; a log is history, not truth, so it lives outside
the event streams (and never counts against their durability budget).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

LOG_RETENTION_DAYS = 7


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    ts: datetime
    line: str
    step: str | None = None
    # On a service's log: the environment of the instance that printed the line
    # (absent on a deployment's log).
    environment_id: str | msgspec.UnsetType = msgspec.UNSET


def stream_name(namespace: str) -> str:
    return f"{namespace.upper()}_LOGS" if namespace else "LOGS"


def subject(namespace: str, deployment_id: str) -> str:
    prefix = f"{namespace}." if namespace else ""
    return f"{prefix}logs.{deployment_id}"


async def ensure_stream(js: JetStreamContext, namespace: str, replicas: int = 1) -> None:
    config = StreamConfig(
        name=stream_name(namespace),
        subjects=[subject(namespace, "*")],
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=LOG_RETENTION_DAYS * 86400.0,
    )
    try:
        await js.stream_info(stream_name(namespace))
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


_encoder = msgspec.json.Encoder()
decode_line = msgspec.json.Decoder(LogLine).decode


class LogWriter:
    """Publishes a deployment's lines (core publish: logs favour speed over fsync)."""

    def __init__(self, js: JetStreamContext, namespace: str, deployment_id: str) -> None:
        self.js = js
        self.subject = subject(namespace, deployment_id)
        self.step: str | None = None
        self.environment_id: str | None = None

    async def write(self, line: str, at: datetime) -> None:
        entry = LogLine(
            ts=at,
            line=line,
            step=self.step,
            environment_id=self.environment_id if self.environment_id else msgspec.UNSET,
        )
        await self.js.publish(self.subject, _encoder.encode(entry))
