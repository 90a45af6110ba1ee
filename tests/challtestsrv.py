"""pebble-challtestsrv (Debian's `pebble` package) as the DNS server of a test: it
answers A/AAAA/TXT queries from what the test sets over its management API.

Missing on a laptop: the test skips, saying so. CI sets DEPLOYFORGE_REQUIRE_SERVERS,
which turns that skip into a failure, so such tests can never silently stop running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import aiohttp
import pytest

from libs.embedded import free_port


def require_binary(name: str, package: str = "pebble") -> str:
    """The path of a server binary only Debian ships; skip (or fail in CI) without it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        reason = f"{name} is not installed (apt-get install -y {package})"
        if os.environ.get("DEPLOYFORGE_REQUIRE_SERVERS"):
            pytest.fail(f"{reason}, and DEPLOYFORGE_REQUIRE_SERVERS is set")
        pytest.skip(reason)
    return found


class ChallTestSrv:
    def __init__(self) -> None:
        self.dns_port = free_port()
        self.management_port = free_port()
        self._process: asyncio.subprocess.Process | None = None
        self._log = Path(tempfile.mkstemp(prefix="challtestsrv-", suffix=".log")[1])

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    async def start(self) -> None:
        binary = require_binary("pebble-challtestsrv")
        with self._log.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                binary,
                "-dns01",
                f"127.0.0.1:{self.dns_port}",
                "-management",
                f"127.0.0.1:{self.management_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                # Names nobody set answer nothing the edge owns.
                "-defaultIPv4",
                "192.0.2.99",
                "-defaultIPv6",
                "",
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        for _ in range(200):
            try:
                await self._post("/clear-txt", {"host": "_probe.invalid."})
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"pebble-challtestsrv did not start: {self._log.read_text()}")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._log.unlink(missing_ok=True)

    async def _post(self, path: str, body: dict[str, object]) -> None:
        url = f"http://127.0.0.1:{self.management_port}{path}"
        async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
            resp.raise_for_status()

    async def set_txt(self, name: str, value: str) -> None:
        await self._post("/set-txt", {"host": f"{name}.", "value": value})

    async def clear_txt(self, name: str) -> None:
        await self._post("/clear-txt", {"host": f"{name}."})

    async def add_a(self, name: str, *addresses: str) -> None:
        await self._post("/add-a", {"host": f"{name}.", "addresses": list(addresses)})
