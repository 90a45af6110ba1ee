"""Runs the gateway: `python -m gateway.main` (or `deployforge gateway`)."""

from __future__ import annotations

import gc

from aiohttp import web

from gateway.app import create_app
from gateway.settings import GatewaySettings
from libs.logging import configure_logging
from libs.settings import load_settings
from libs.tracing import configure_tracing


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", level=settings.log_level, fmt=settings.log_format)
    configure_tracing("gateway", console=settings.otel_console)
    app = create_app(settings)
    # Everything alive now lives as long as the process: keep it out of the
    # collector's way (full collections were ~35 ms pauses under load).
    gc.freeze()
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=5.0,
        print=None,
    )


if __name__ == "__main__":
    main()
