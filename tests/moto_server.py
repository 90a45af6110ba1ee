"""moto's server (AWS's wire protocol, EC2 and S3 among others) in its own process on a
free port: the real protocol over HTTP, no mocks inside the process under test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp

from libs.embedded import free_port


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(400):
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{self.url}/moto-api/") as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        raise RuntimeError("moto's server did not start")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
