"""An edge replica's view of the edge bucket: loaded whole, then kept current.

The watch delivers the last value of every key, then a marker, then each
change as it is written. The replica is ready at the marker: every route and
certificate that existed when it started is served by then. An entry that
cannot be read (a newer writer's shape, a key the master key cannot open) is
logged and skipped: one bad entry never stops a replica from serving the rest.
"""

from __future__ import annotations

import asyncio

import msgspec
import nats.errors
import structlog
from cryptography.exceptions import InvalidTag
from nats.js.kv import KeyValue

from services.edge import table
from services.edge.certificates import CertificateStore
from services.edge.routing import EdgeState

log = structlog.get_logger("edge")

_DELETED = ("DEL", "PURGE")


def apply(state: EdgeState, certificates: CertificateStore, key: str, value: bytes | None) -> None:
    """Apply one bucket entry (`value` None: the key was deleted)."""
    kind, _, rest = key.partition(".")
    if kind == "route":
        if value is None:
            state.drop_route(rest)
        else:
            state.put_route(table.ROUTE.decode(value))
    elif kind == "upstream":
        service_id, _, environment_id = rest.partition(".")
        if value is None:
            state.upstreams.pop((service_id, environment_id), None)
        else:
            state.put_upstream(service_id, environment_id, table.UPSTREAM.decode(value))
    elif kind == "cert":
        if value is None:
            certificates.drop(rest)
        else:
            certificates.put(table.CERTIFICATE.decode(value))
    elif kind == "challenge":
        if value is None:
            state.challenges.pop(rest, None)
        else:
            state.challenges[rest] = table.CHALLENGE.decode(value).key_authorization


async def follow(
    kv: KeyValue,
    state: EdgeState,
    certificates: CertificateStore,
    ready: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """Load the bucket, set `ready`, then apply changes until `stop` is set."""
    watcher = await kv.watchall()
    loaded = 0
    try:
        while not stop.is_set():
            try:
                entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
            except nats.errors.TimeoutError:
                continue
            if entry is None:
                if not ready.is_set():
                    log.info(
                        "edge_loaded",
                        routes=len(state.routes),
                        upstreams=len(state.upstreams),
                        certificates=len(certificates),
                        entries=loaded,
                    )
                    ready.set()
                continue
            deleted = entry.operation in _DELETED
            try:
                apply(state, certificates, entry.key, None if deleted else entry.value)
            except (msgspec.DecodeError, ValueError, OSError, InvalidTag, RuntimeError) as exc:
                log.warning("edge_entry_skipped", key=entry.key, error=type(exc).__name__)
            loaded += 1
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
