"""Schemathesis against the whole suite from its own `/v1/openapi.json`.

Bounded in time (`DEPLOYFORGE_FUZZ_SECONDS`, two minutes by default): every
generated request, valid or not, gets an answer below 500; afterwards every
read model still advances and none is stalled.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from libs.embedded import free_port
from tests.e2e.test_up import _login, _ready, _up

FUZZ_SECONDS = int(os.environ.get("DEPLOYFORGE_FUZZ_SECONDS", "120"))


async def _created(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> str:
    async with http.post(url, json=body) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


async def _readable(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        async with http.get(url) as resp:
            if resp.status == 200:
                return
            assert resp.status == 404, await resp.text()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never became readable: a read model stopped")


async def test_schemathesis_finds_no_server_error_and_read_models_keep_up(
    data_root: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = data_root / "up.log"
    # Limits stay on for clients; the fuzzer is one client that must not be throttled.
    proc = await _up(
        data_root / "data",
        port,
        log,
        rate_limit_per_minute="10000000",
        anonymous_rate_limit_per_minute="10000000",
    )
    try:
        async with aiohttp.ClientSession() as http:
            await _ready(http, base, proc, log)
            session = {"Authorization": f"Bearer {await _login(http, base)}"}
            # An API token with every scope, so the fuzzer reaches every route.
            async with http.post(
                f"{base}/v1/tokens",
                json={"name": "fuzz", "scopes": ["read", "write", "deploy", "admin"]},
                headers=session,
            ) as resp:
                assert resp.status == 201, await resp.text()
                token = (await resp.json())["token"]
            fuzz = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base}/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error",
                "--max-time",
                str(FUZZ_SECONDS),
                "--workers",
                "2",
                "--no-shrink",
                # A followed log (?follow=true) streams until the client goes: a
                # request is given up after this long (a timeout is not a failure).
                "--request-timeout",
                "10",
                "--output-truncate",
                "true",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=data_root,
            )
            out, _ = await asyncio.wait_for(fuzz.communicate(), timeout=FUZZ_SECONDS + 300)
            report = out.decode(errors="replace")
            assert fuzz.returncode == 0 or _only_the_fuzzer_crashed(report), report[-6000:]

            # A fresh login: the fuzzer may well have revoked its own token.
            fresh = await _login(http, base)
            authed = aiohttp.ClientSession(headers={"Authorization": f"Bearer {fresh}"})
            async with authed:
                project = await _created(authed, f"{base}/v1/projects", {"name": "after-fuzz"})
                await _readable(authed, f"{base}/v1/projects/{project}")
                org = await _created(authed, f"{base}/v1/organizations", {"name": "after-fuzz"})
                await _readable(authed, f"{base}/v1/organizations/{org}")
                hook = await _created(
                    authed,
                    f"{base}/v1/webhooks",
                    {"url": "https://example.com/after-fuzz", "events": ["project.*"]},
                )
                await _readable(authed, f"{base}/v1/webhooks/{hook}")
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200, await resp.text()
        text = log.read_text(errors="replace")
        assert "projection_stalled" not in text
        assert "unhandled_error" not in text
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), timeout=60)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


# CPython 3.11's parser can fail in Hypothesis's own lambda introspection when the
# fuzzer's stack is deep ("AST constructor recursion depth mismatch"): an error of
# the fuzzing process, not an answer of ours. Tolerated only when every generated
# case passed.
_FUZZER_CRASH = "SystemError: AST constructor recursion depth mismatch"


def _only_the_fuzzer_crashed(report: str) -> bool:
    counted = re.search(r"(\d+) generated, (\d+) passed", report)
    return (
        counted is not None
        and counted.group(1) == counted.group(2)
        and _FUZZER_CRASH in report
        and report.count("Runtime Error") == report.count(_FUZZER_CRASH)
    )
