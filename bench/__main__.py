"""`python -m bench`: run the benchmarks, print their tables, rewrite docs/performance.md."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import (
    appends,
    clients,
    deploys,
    door,
    drift,
    edge,
    gateway,
    issuance,
    lag,
    webhooks,
)
from bench.machine import ROOT, facts, load_average
from bench.report import Table, kept_tables, render_text, results_section, write_results
from bench.servers import BenchServers, provision

# A benchmark gives one table, or several.
Runner = Callable[[BenchServers, Path, bool], Awaitable[Table | list[Table]]]


async def _appends(_: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = appends.Settings(duration=1.0, rounds=1, warmup=0.5) if quick else appends.Settings()
    return await appends.run(work_dir, settings)


async def _door(_: BenchServers, __: Path, quick: bool) -> Table:
    return door.run(0.6 if quick else 3.0)


async def _gateway(servers: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = (
        gateway.Settings(duration=1.5, rounds=1, half_duration=2.0, warmup=0.5)
        if quick
        else gateway.Settings()
    )
    return await gateway.run(servers.servers, work_dir, settings)


async def _lag(servers: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = lag.Settings(duration=3.0, warmup=1.0) if quick else lag.Settings()
    return await lag.run(servers.servers, work_dir, settings)


async def _deploys(servers: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = (
        deploys.Settings(sequential=4, by_hand=2, organizations=2, per_organization=3)
        if quick
        else deploys.Settings()
    )
    return await deploys.run(servers.servers, work_dir, settings)


async def _webhooks(servers: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = (
        webhooks.Settings(burst=300, duration=3.0, warmup=0.5, rounds=1)
        if quick
        else webhooks.Settings()
    )
    return await webhooks.run(servers.servers, work_dir, settings)


async def _edge(servers: BenchServers, work_dir: Path, quick: bool) -> list[Table]:
    settings = (
        edge.Settings(duration=1.5, rounds=1, warmup=0.5, certificates=100)
        if quick
        else edge.Settings()
    )
    return await edge.run(servers.servers, work_dir, settings)


async def _issuance(servers: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = issuance.Settings(domains=3) if quick else issuance.Settings()
    return await issuance.run(servers.servers, work_dir, settings)


async def _drift(servers: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = (
        drift.Settings(services=5, security_groups=8, volumes=6, buckets=4, servers=2, scans=3)
        if quick
        else drift.Settings()
    )
    return await drift.run(servers.servers, work_dir, settings)


async def _clients(servers: BenchServers, work_dir: Path, quick: bool) -> Table:
    settings = (
        clients.Settings(runs=3, duration=1.0, rounds=1, warmup=0.3)
        if quick
        else clients.Settings()
    )
    return await clients.run(servers.servers, work_dir, settings)


BENCHMARKS: dict[str, Runner] = {
    "appends": _appends,
    "door": _door,
    "gateway": _gateway,
    "lag": _lag,
    "deploys": _deploys,
    "webhooks": _webhooks,
    "edge": _edge,
    "issuance": _issuance,
    "drift": _drift,
    "clients": _clients,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        help="run only this benchmark (repeatable); default: all",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short passes to try the harness; writes nothing to docs/performance.md",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs" / "performance.md",
        help="the Markdown file whose results section is rewritten",
    )
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (server data and logs)"
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    selected = args.only or list(BENCHMARKS)
    work_dir = Path(tempfile.mkdtemp(prefix="deployforge-bench-"))
    started, load_before = time.monotonic(), load_average()
    tables: list[Table] = []
    failed = 0
    try:
        async with provision(work_dir / "servers") as servers:
            for name in selected:
                print(f"-- {name} ...", flush=True)
                begin = time.monotonic()
                try:
                    made = await BENCHMARKS[name](servers, work_dir, args.quick)
                except Exception as exc:
                    traceback.print_exc()
                    failed += 1
                    made = Table(
                        title=f"{name}: failed", columns=["error"], rows=[[repr(exc)]], notes=[]
                    )
                for table in made if isinstance(made, list) else [made]:
                    tables.append(table)
                    print(render_text(table))
                print(f"   ({time.monotonic() - begin:.0f} s)\n", flush=True)
            machine = facts(
                nats_server=servers.nats_version,
                postgres=servers.postgres_version,
                servers=servers.description,
            )
    finally:
        if args.keep:
            print(f"work directory kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    machine += [
        ("Load average (1/5/15 min)", f"{load_before} before, {load_average()} after"),
        ("Run time", f"{time.monotonic() - started:.0f} s ({', '.join(selected)})"),
    ]
    if args.quick or args.no_write:
        return 1 if failed else 0
    # With --only, the other benchmarks' latest tables stay, marked with their run.
    kept = kept_tables(args.output, tables) if args.only else []
    if kept:
        machine.append(("Tables kept from an earlier run", ", ".join(str(n) for n, _ in kept)))
    write_results(args.output, results_section(machine, tables, kept))
    print(f"results written to {args.output}")
    return 1 if failed else 0


def main() -> None:
    sys.exit(asyncio.run(run(parse_args(sys.argv[1:]))))


# Guarded: the load generator's spawned process imports this module as __mp_main__.
if __name__ == "__main__":
    main()
