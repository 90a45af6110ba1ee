"""Waiting for a real HTTP server to come up, and giving up on one that never does."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from services.deploy.health import free_port, health_url, wait_healthy
from services.deploy.runner import StepCancelled

# Answers every GET with the status given in argv, after sleeping the delay given in argv.
APP = """
import http.server, os, sys, time
time.sleep(float(sys.argv[2]))
status = int(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
Serve = Callable[..., None]


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int, status: int, delay: float = 0.0) -> None:
        env = {**os.environ, "PORT": str(port)}
        argv = [sys.executable, "-c", APP, str(status), str(delay)]
        started.append(subprocess.Popen(argv, env=env))

    yield start
    for process in started:
        process.kill()
        process.wait()


async def test_a_server_that_comes_up_late_is_healthy_once_it_answers(serve: Serve) -> None:
    port = free_port()
    serve(port, 200, delay=0.8)
    started = time.monotonic()
    assert await wait_healthy(health_url(port, "/healthz"), timeout=15, interval=0.1)
    assert time.monotonic() - started >= 0.8


async def test_a_redirect_counts_as_healthy(serve: Serve) -> None:
    port = free_port()
    serve(port, 302)
    assert await wait_healthy(health_url(port), timeout=15)


async def test_an_erroring_server_is_unhealthy_when_time_runs_out(serve: Serve) -> None:
    port = free_port()
    serve(port, 500)
    problems: list[str] = []

    async def report(line: str) -> None:
        problems.append(line)

    started = time.monotonic()
    assert not await wait_healthy(health_url(port), timeout=2, interval=0.1, on_line=report)
    assert 2 <= time.monotonic() - started < 4
    assert any("HTTP 500" in line for line in problems)
    # Each kind of failure is reported once, not on every attempt.
    assert len(problems) == len(set(problems))


async def test_nothing_listening_is_unhealthy_after_the_timeout() -> None:
    started = time.monotonic()
    assert not await wait_healthy(health_url(free_port()), timeout=0.5, interval=0.1)
    assert time.monotonic() - started < 2


async def test_cancel_ends_the_wait_at_once() -> None:
    cancel = asyncio.Event()
    waiting = asyncio.create_task(wait_healthy(health_url(free_port()), timeout=30, cancel=cancel))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    cancel.set()
    with pytest.raises(StepCancelled):
        await waiting
    assert time.monotonic() - started < 1
