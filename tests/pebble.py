"""Let's Encrypt's pebble (Debian's `pebble` package) as the ACME CA of a test.

Its own HTTPS listener gets a certificate from a test root (`ca_bundle` is that
root, for the ACME client); it resolves names with the test's DNS server
(pebble-challtestsrv) and validates HTTP-01 on `http_port`, the edge's. The
root it signs with is new on every start: `root_pem()` fetches it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import aiohttp

from libs.embedded import free_port
from tests.certs import TestCA
from tests.challtestsrv import require_binary


class Pebble:
    def __init__(
        self, *, dns_resolver: str, http_port: int, validity_seconds: int | None = None
    ) -> None:
        self.port = free_port()
        self.management_port = free_port()
        self.http_port = http_port
        self.dns_resolver = dns_resolver
        self.validity_seconds = validity_seconds
        self._dir = Path(tempfile.mkdtemp(prefix="pebble-"))
        self._process: asyncio.subprocess.Process | None = None
        self._tls = TestCA("Pebble listener root")

    @property
    def directory_url(self) -> str:
        return f"https://localhost:{self.port}/dir"

    @property
    def ca_bundle(self) -> str:
        return str(self._dir / "listener-root.pem")

    async def start(self) -> None:
        binary = require_binary("pebble")
        chain, key, _ = self._tls.issue("localhost", ips=("127.0.0.1",))
        (self._dir / "cert.pem").write_text(chain)
        (self._dir / "key.pem").write_bytes(key)
        Path(self.ca_bundle).write_bytes(self._tls.pem)
        config: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self._dir / "cert.pem"),
            "privateKey": str(self._dir / "key.pem"),
            "httpPort": self.http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if self.validity_seconds is not None:
            config["certificateValidityPeriod"] = self.validity_seconds
        (self._dir / "pebble.json").write_text(json.dumps({"pebble": config}))
        log = (self._dir / "pebble.log").open("wb")
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "-config",
            str(self._dir / "pebble.json"),
            "-dnsserver",
            self.dns_resolver,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={
                "PEBBLE_VA_NOSLEEP": "1",  # validate at once
                "PEBBLE_WFE_NONCEREJECT": "0",  # no random bad-nonce rejections
            },
        )
        log.close()
        for _ in range(200):
            try:
                await self.root_pem()
                return
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.05)
        raise RuntimeError(f"pebble did not start: {self.log()}")

    def log(self) -> str:
        path = self._dir / "pebble.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def root_pem(self) -> str:
        """The root pebble signs with (through its intermediate)."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        connector = aiohttp.TCPConnector(ssl=self._tls.client_context())
        async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
