"""Health checks of a release's instances, and the free ports they listen on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import aiohttp

from libs.errors import ValidationFailed
from services.deploy.runner import StepCancelled

# One slow answer must not eat the whole budget, nor a hung server stall the loop.
_ATTEMPT_TIMEOUT = 2.0
_MAX_PATH_LENGTH = 1024


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing is bound to right now (the kernel's pick)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def health_url(port: int, path: str = "/", host: str = "127.0.0.1") -> str:
    """The URL checking `path` on an instance listening on `port` of this machine.

    `path` is user input: it must be an absolute path, so that it can never turn
    the URL into one for another host (`@evil.example/`, `//evil.example/`).
    Raises ValidationFailed on `$.health_check_path`.
    """
    field = "$.health_check_path"
    if not path.startswith("/") or path.startswith("//"):
        raise ValidationFailed("health check path must start with a single '/'", field)
    if len(path) > _MAX_PATH_LENGTH:
        raise ValidationFailed("health check path is too long", field)
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        raise ValidationFailed("health check path must not contain whitespace", field)
    if "\\" in path or "#" in path:
        raise ValidationFailed("health check path must not contain '\\' or '#'", field)
    return f"http://{host}:{port}{path}"


async def wait_healthy(
    url: str,
    *,
    timeout: float,
    interval: float = 0.2,
    cancel: asyncio.Event | None = None,
    on_line: Callable[[str], Awaitable[None]] | None = None,
) -> bool:
    """Poll `url` until it answers a GET with a 2xx or 3xx status; False after `timeout` seconds.

    Refused connections and error statuses are retried every `interval` seconds,
    since a starting server is neither. Each new kind of failure is reported once
    to `on_line`. Raises runner.StepCancelled as soon as `cancel` is set.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_problem: str | None = None
    # A new release usually answers within tens of milliseconds: poll fast at
    # first, then back off to `interval`.
    wait = min(0.01, interval)
    # Redirects are not followed: a 3xx already proves the server answers, and
    # following one could lead the check off this machine.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=_ATTEMPT_TIMEOUT), trust_env=False
    ) as session:
        while True:
            if cancel is not None and cancel.is_set():
                raise StepCancelled("health check cancelled")
            problem = await _probe(session, url, min(_ATTEMPT_TIMEOUT, deadline - loop.time()))
            if problem is None:
                return True
            if problem != last_problem and on_line is not None:
                await on_line(f"health check {url}: {problem}")
            last_problem = problem
            pause = min(wait, deadline - loop.time())
            wait = min(wait * 2, interval)
            if pause <= 0:
                return False
            if cancel is None:
                await asyncio.sleep(pause)
            else:
                try:
                    await asyncio.wait_for(cancel.wait(), pause)
                except TimeoutError:
                    pass


async def _probe(session: aiohttp.ClientSession, url: str, timeout: float) -> str | None:
    try:
        async with session.get(
            url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=max(timeout, 0.05))
        ) as response:
            if 200 <= response.status < 400:
                return None
            return f"HTTP {response.status}"
    except (aiohttp.ClientError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except TimeoutError:
        return "no answer in time"


async def check(
    session: aiohttp.ClientSession, url: str, timeout: float = 2.0
) -> tuple[bool, int | None, float, str | None]:
    """One probe of `url`: whether it passed, the status, the latency in ms and the error."""
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        async with session.get(
            url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            status = response.status
            if not 200 <= status < 400:
                error = f"HTTP {status}"
    except (aiohttp.ClientError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except TimeoutError:
        error = "no answer in time"
    latency = round((time.perf_counter() - started) * 1000, 3)
    return error is None, status, latency, error
