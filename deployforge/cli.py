"""The `deployforge` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

DEFAULT_DATA_DIR = ".deployforge"


def _parser() -> argparse.ArgumentParser:
    from deployforge.projections import BY_NAME

    parser = argparse.ArgumentParser(prog="deployforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole suite on this machine")
    up.add_argument("--port", type=int, default=int(os.environ.get("DEPLOYFORGE_PORT", "8080")))
    up.add_argument("--host", default=os.environ.get("DEPLOYFORGE_HOST", "127.0.0.1"))
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DEPLOYFORGE_DATA_DIR", DEFAULT_DATA_DIR)),
    )
    replay = sub.add_parser("replay", help="rebuild a read model from its events")
    replay.add_argument("projection")
    replay.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DEPLOYFORGE_DATA_DIR", DEFAULT_DATA_DIR)),
    )
    projections = sub.add_parser(
        "projections", help="where each read model is; retry or skip a stalled one"
    )
    projections.add_argument("action", choices=("status", "retry", "skip"), nargs="?")
    projections.add_argument("projection", nargs="?")
    projections.add_argument(
        "--seq", type=int, help="skip: the sequence (default: where it stalled)"
    )
    projections.add_argument("--reason", default="", help="skip: why, kept with the skip")
    projections.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DEPLOYFORGE_DATA_DIR", DEFAULT_DATA_DIR)),
    )
    sub.add_parser(
        "bootstrap", help="create the first administrator on the servers DEPLOYFORGE_* name"
    )
    # One subcommand per bounded context (deployforge/projections.py CONTEXTS).
    for name in BY_NAME:
        sub.add_parser(name, help=f"run the {name} service (one replica)")
    sub.add_parser("agent", help="run a deploy agent on this machine")
    sub.add_parser("gateway", help="run the HTTP gateway (one replica)")
    sub.add_parser("edge", help="run an edge replica: HTTP(S) for the deployed domains")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        from deployforge.up import run_up

        return asyncio.run(run_up(args.data_dir, args.host, args.port))
    if args.command == "replay":
        from deployforge.replay import run_replay

        return asyncio.run(run_replay(args.projection, args.data_dir))
    if args.command == "projections":
        from deployforge.projection_admin import run_projections

        return asyncio.run(
            run_projections(
                args.action or "status", args.projection, args.seq, args.reason, args.data_dir
            )
        )
    if args.command == "bootstrap":
        from deployforge.up import bootstrap_admin
        from libs.settings import CoreSettings, load_settings

        asyncio.run(bootstrap_admin(load_settings(CoreSettings), os.environ))
        return 0
    from deployforge.projections import BY_NAME

    if args.command in BY_NAME:
        BY_NAME[args.command].main()
        return 0
    if args.command == "agent":
        from services.deploy.agent import main as agent_main

        agent_main()
        return 0
    if args.command == "gateway":
        from gateway.main import main as gateway_main

        gateway_main()
        return 0
    if args.command == "edge":
        from services.edge.main import main as edge_main

        edge_main()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
