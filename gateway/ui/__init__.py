"""The web UI under /ui: pages rendered on the server (Jinja) from `/v1` answers, made
live by htmx and its SSE extension (vendored in static/, checksums beside them).

It is a client of the public API like dfctl and the SDK: it imports no server
package, and calls the gateway it runs in over its own socket with the signed-in
user's tokens, which stay in the session row (see sessions.py), never in the browser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import httpx
import jinja2
from aiohttp import web

from gateway.ui import actions, live, pages
from gateway.ui.handling import (
    CLIENT_HEADER,
    HTTP,
    PREFIX,
    RELAY_HEADER,
    RELAY_SECRET,
    STORE,
    ui_middleware,
)
from gateway.ui.sessions import SessionStore

__all__ = [
    "CLIENT_HEADER",
    "PREFIX",
    "RELAY_HEADER",
    "STORE",
    "SessionStore",
    "create_ui",
]
HERE = Path(__file__).parent


async def _http(app: web.Application) -> AsyncIterator[None]:
    # One connection pool for every page's API calls; no timeout on the live streams.
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as client:
        app[HTTP] = client
        yield


def create_ui(relay_secret: str) -> web.Application:
    """The /ui sub-application; the gateway sets `STORE` on itself once its pool is up,
    and honours `relay_secret` on the UI's calls (see handling.relay_headers)."""
    app = web.Application(middlewares=[ui_middleware])
    app[RELAY_SECRET] = relay_secret
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["prefix"] = PREFIX
    env.filters["age"] = pages.age
    env.filters["short"] = lambda value, n=12: str(value)[:n] if value else ""
    app.cleanup_ctx.append(_http)
    app.add_routes(actions.routes)
    app.add_routes(pages.routes)
    app.add_routes(live.routes)
    static = app.router.add_static("/static/", HERE / "static", name="static")
    assert isinstance(static, web.StaticResource)
    env.globals["static"] = lambda name: str(static.url_for(filename=name, append_version=True))
    return app
