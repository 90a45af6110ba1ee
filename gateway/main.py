"""Runs the gateway: `python -m gateway.main` (or `deployforge gateway`)."""

from __future__ import annotations

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
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=5.0,
        print=None,
    )


if __name__ == "__main__":
    main()
