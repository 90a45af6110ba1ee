"""The gateway benchmark's baseline: a bare aiohttp handler returning a small JSON.

Run as `python -m bench.bare --port N`, like the gateway, in its own process.
"""

from __future__ import annotations

import argparse

import msgspec
from aiohttp import web

# About the size of the gateway's /v1/auth/verify answer.
BODY = msgspec.json.encode(
    {
        "valid": True,
        "user_id": "usr_01JBENCHBASELINE0000000000",
        "organization_id": "org_01JBENCHBASELINE0000000000",
        "token_type": "access_token",
        "scopes": ["read", "write", "deploy", "admin"],
        "session_id": "ses_01JBENCHBASELINE0000000000",
        "token_id": None,
    }
)
PATH = "/ping"


async def ping(_: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get(PATH, ping)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
