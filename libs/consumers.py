"""Pulling from JetStream durable consumers, the same way in every loop."""

from __future__ import annotations

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext


async def pull(sub: JetStreamContext.PullSubscription, batch: int, timeout: float) -> list[Msg]:
    """Up to `batch` messages, or none when nothing arrived within `timeout`.

    An idle fetch is the normal case, not an error. nats-py reports it as its
    own `nats.errors.TimeoutError` on some paths and as the builtin
    `TimeoutError` on others (a lingering request whose deadline passed while
    the no-wait probe was answered); both mean "nothing yet".
    """
    try:
        return await sub.fetch(batch, timeout=timeout)
    except (nats.errors.TimeoutError, TimeoutError):
        return []
