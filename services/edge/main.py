"""`deployforge edge`: the data plane. Any number of replicas, all alike.

Each replica watches the edge bucket (services/edge/table.py), serves every
route and certificate in it, and listens for HTTP and HTTPS. The default
ports (8880 and 8443) need no privileges and do not clash with the gateway
(8080); in production run it on 80 and 443 (as root, or with
CAP_NET_BIND_SERVICE, or behind a port mapping, then set
DEPLOYFORGE_EDGE_PUBLIC_HTTPS_PORT=443 so HTTP redirects name the port clients use).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from libs.crypto import SecretBox
from libs.ids import new_id
from libs.lifecycle import run_until_signalled
from libs.messaging import connect_nats
from libs.metrics import start_metrics_server
from libs.settings import CoreSettings, load_settings
from services.edge import observe, table
from services.edge.certificates import CertificateStore
from services.edge.routing import EdgeState
from services.edge.server import EdgeServer
from services.edge.watch import follow

log = structlog.get_logger("edge")


class EdgeSettings(CoreSettings, frozen=True, kw_only=True):
    edge_host: str = "0.0.0.0"
    edge_http_port: int = 8880
    edge_https_port: int = 8443
    # The HTTPS port clients reach (for redirects), when a port mapping stands in front.
    edge_public_https_port: int = 0


class Edge:
    """One edge replica: its view of the bucket and its listeners."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.state = EdgeState()
        box = SecretBox(settings.secret_key) if settings.secret_key else None
        self.certificates = CertificateStore(box)
        self.state.certified = self.certificates.by_name
        self.server = EdgeServer(
            self.state,
            self.certificates,
            host=settings.edge_host,
            http_port=settings.edge_http_port,
            https_port=settings.edge_https_port,
            public_https_port=settings.edge_public_https_port or None,
        )
        # Names this replica in drift scans' questions (a new one each start).
        self.replica_id = new_id("edge")
        self.loaded = asyncio.Event()  # every entry of the bucket applied
        self.ready = asyncio.Event()  # loaded and listening

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Load the bucket, listen, serve until `stop` is set (`ready` set once serving)."""
        settings = self.settings
        nc = await connect_nats(settings, "edge")
        try:
            kv = await table.bucket(nc.jetstream(), settings.namespace, settings.stream_replicas)
            following = asyncio.create_task(
                follow(kv, self.state, self.certificates, self.loaded, stop)
            )
            loaded = asyncio.create_task(self.loaded.wait())
            await asyncio.wait({following, loaded}, return_when=asyncio.FIRST_COMPLETED)
            if following.done():  # it failed before the bucket was loaded
                loaded.cancel()
                following.result()
                return
            await self.server.start()
            asked = await observe.answer(
                nc, settings.namespace, self.replica_id, self.state, self.certificates
            )
            metrics = None
            if settings.metrics_port:
                metrics = await start_metrics_server(
                    settings.metrics_host, settings.metrics_port, ready=self.ready
                )
            self.ready.set()
            if ready is not None:
                ready.set()
            log.info(
                "edge_ready",
                replica_id=self.replica_id,
                http_port=self.server.http_port,
                https_port=self.server.https_port,
                routes=len(self.state.routes),
            )
            try:
                await stop.wait()
            finally:
                await asked.unsubscribe()
                await self.server.close()
                if metrics is not None:
                    await metrics.cleanup()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
        finally:
            await nc.drain()


async def run(
    settings: EdgeSettings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    await Edge(settings).run(stop, ready)


def main() -> None:
    run_until_signalled("edge", load_settings(EdgeSettings), run, fast_loop=True)


if __name__ == "__main__":
    main()
