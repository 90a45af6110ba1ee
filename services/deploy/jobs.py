"""The work agents share, and the leases that show an agent is still alive.

Jobs: a work-queue stream, one message `<ns>.jobs.deploy.<deployment_id>` per
dispatched deployment (deduplicated by id). Agents share one durable pull
consumer, so each job goes to one agent. A job message carries only the id: the
agent asks the deploy service for the details (which include secrets) in a
reply that is never stored.

Leases: a KV bucket whose entries expire after `LEASE_SECONDS` unless the agent
running that deployment renews them; the deploy service's watchdog fails a
deployment whose lease is gone.
"""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    Header,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

LEASE_SECONDS = 15.0
RENEW_SECONDS = 5.0
AGENTS_CONSUMER = "agents"


def stream_name(namespace: str) -> str:
    return f"{namespace.upper()}_JOBS" if namespace else "JOBS"


def subject(namespace: str, deployment_id: str) -> str:
    prefix = f"{namespace}." if namespace else ""
    return f"{prefix}jobs.deploy.{deployment_id}"


def lease_bucket(namespace: str) -> str:
    return f"{namespace}_leases" if namespace else "deployforge_leases"


async def ensure(js: JetStreamContext, namespace: str, replicas: int = 1) -> KeyValue:
    """Create the jobs stream and the lease bucket if missing; the bucket."""
    config = StreamConfig(
        name=stream_name(namespace),
        subjects=[subject(namespace, "*")],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=120.0,
    )
    try:
        await js.stream_info(config.name)  # type: ignore[arg-type]
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
    try:
        return await js.key_value(lease_bucket(namespace))
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=lease_bucket(namespace),
                ttl=LEASE_SECONDS,
                storage=StorageType.FILE,
                replicas=replicas,
            )
        )


async def publish(js: JetStreamContext, namespace: str, deployment_id: str) -> None:
    """Hand a dispatched deployment to the agents (once, however often it is called)."""
    await js.publish(
        subject(namespace, deployment_id),
        deployment_id.encode(),
        headers={Header.MSG_ID.value: f"job-{deployment_id}"},
    )
