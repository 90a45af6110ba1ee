"""NATS key-value buckets of the suite: named per namespace, file-backed, made on first use."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue


def bucket_name(namespace: str, name: str) -> str:
    """`<namespace>_<name>`, or `deployforge_<name>` without a namespace."""
    return f"{namespace}_{name}" if namespace else f"deployforge_{name}"


async def file_bucket(
    js: JetStreamContext, bucket: str, replicas: int = 1, *, history: int = 1
) -> KeyValue:
    """The bucket `bucket`, created (file storage, `replicas`) if it does not exist yet."""
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket, storage=StorageType.FILE, replicas=replicas, history=history
            )
        )
