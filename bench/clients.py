"""Benchmark 11: the clients. dfctl's start-up against the interpreter's own, and the
SDK's calls per second against bare httpx on the same route.

The auth and deploy services, the gateway and an agent run as processes (as for
benchmark 4). Start-up: `python -c pass` (baseline), `dfctl --help` (no server) and
`dfctl deployments list -o json` (one authenticated list), each run `runs` times in
turn, wall time from spawn to exit. Calls: `GET /v1/deployments?limit=20` with
`DeployForge.get` and with a bare `httpx.Client.get` carrying the same headers, one
after the other for `duration` seconds each, alternated `rounds` times.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import msgspec

from bench import deploys
from bench.deploys import Api, kill_leftovers, processes
from bench.report import Table, fmt, fmt_ratio
from bench.stats import ratio, summarize
from libs.testing import Servers, Suite, isolated_suite
from services.auth.events import STREAM as AUTH_STREAM
from services.deploy.events import STREAM as DEPLOY_STREAM

DFCTL = str(Path(sys.executable).with_name("dfctl"))


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    runs: int = 20
    duration: float = 5.0
    rounds: int = 3
    warmup: float = 1.0


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    starts: dict[str, list[float]]
    sdk_rates: list[float]
    bare_rates: list[float]


async def run(servers: Servers, work_dir: Path, settings: Settings) -> Table:
    async with isolated_suite(servers, [AUTH_STREAM, DEPLOY_STREAM]) as suite:
        outcome = await measure(suite, work_dir, settings)
    return _table(outcome, settings)


async def measure(suite: Suite, work_dir: Path, settings: Settings) -> Outcome:
    agent_dir = work_dir / "clients" / "agent"
    try:
        async with processes(suite, work_dir, agent_dir, deploys.Settings()) as (base, _):
            async with aiohttp.ClientSession() as http:
                api = Api(http, base)
                await api.login()
                token = (
                    await api.call(
                        "POST", "/v1/tokens", {"name": "bench", "scopes": ["read", "write"]}
                    )
                )["token"]
            env = {**os.environ, "DEPLOYFORGE_API_URL": base, "DEPLOYFORGE_TOKEN": token}
            commands = {
                "python -c pass (baseline)": [sys.executable, "-c", "pass"],
                "dfctl --help": [DFCTL, "--help"],
                "dfctl deployments list -o json": [DFCTL, "deployments", "list", "-o", "json"],
            }
            starts: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(settings.runs):
                for name, argv in commands.items():
                    starts[name].append(await asyncio.to_thread(_wall, argv, env))
            sdk, bare = await asyncio.to_thread(_rates, base, token, settings)
    finally:
        kill_leftovers([agent_dir])
    return Outcome(starts=starts, sdk_rates=sdk, bare_rates=bare)


def _wall(argv: list[str], env: dict[str, str]) -> float:
    begun = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - begun


def _rates(base: str, token: str, settings: Settings) -> tuple[list[float], list[float]]:
    from deployforge_client import DeployForge

    path, params = "/v1/deployments", {"limit": "20"}
    with DeployForge(base, token) as sdk, httpx.Client() as bare:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        def with_sdk() -> None:
            sdk.get(path, **params)

        def with_bare() -> None:
            response = bare.get(base + path, params=params, headers=headers)
            response.raise_for_status()
            response.json()

        _for(with_sdk, settings.warmup)
        _for(with_bare, settings.warmup)
        sdk_rates, bare_rates = [], []
        for _ in range(settings.rounds):
            sdk_rates.append(_for(with_sdk, settings.duration))
            bare_rates.append(_for(with_bare, settings.duration))
    return sdk_rates, bare_rates


def _for(call: object, seconds: float) -> float:
    """Calls per second of `call`, one after the other, for `seconds`."""
    assert callable(call)
    done, begun = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - begun) < seconds:
        call()
        done += 1
    return done / elapsed


def _table(o: Outcome, settings: Settings) -> Table:
    baseline = summarize(o.starts["python -c pass (baseline)"]).p50_ms
    rows = []
    for name, samples in o.starts.items():
        s = summarize(samples)
        rows.append(
            [name, fmt(s.p50_ms, 0), fmt(s.p99_ms, 0), fmt_ratio(ratio(s.p50_ms, baseline))]
        )
    sdk = sorted(o.sdk_rates)[len(o.sdk_rates) // 2]
    bare = sorted(o.bare_rates)[len(o.bare_rates) // 2]
    rows.append(["bare httpx GET /v1/deployments, calls/s (baseline)", fmt(bare, 0), "", "1.00x"])
    rows.append(["DeployForge.get, same route, calls/s", fmt(sdk, 0), "", fmt_ratio(sdk / bare)])
    met = "met" if sdk / bare >= 0.8 else "NOT met"
    notes = [
        f"Start-up: {settings.runs} runs of each command, in turn; wall time from spawn to "
        "exit (p50 and p99, ms). `deployments list` includes its login-free API call "
        "(DEPLOYFORGE_TOKEN) to the gateway.",
        f"Calls: one connection each, calls one after the other for {settings.duration:g} s, "
        f"alternated {settings.rounds} times; the median round. SDK vs bare httpx: "
        f"{sdk / bare:.2f}x (target >= 0.8x: {met}).",
    ]
    return Table(
        title="11. Clients: dfctl start-up and SDK calls",
        columns=["what", "p50 / rate", "p99", "vs baseline"],
        rows=rows,
        notes=notes,
    )
