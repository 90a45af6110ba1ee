"""`deployforge up` on a fresh data directory: serves, restarts what crashes, stops, resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil

from libs.embedded import free_port

EMAIL = "root@example.com"
PASSWORD = "a very long password"


async def _up(data_dir: Path, port: int, log: Path, **settings: str) -> asyncio.subprocess.Process:
    """`deployforge up` on its own embedded servers; `settings` become DEPLOYFORGE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFORGE_")}
    env |= {"DEPLOYFORGE_ADMIN_EMAIL": EMAIL, "DEPLOYFORGE_ADMIN_PASSWORD": PASSWORD}
    env |= {f"DEPLOYFORGE_{name.upper()}": value for name, value in settings.items()}
    argv = ["-m", "deployforge.cli", "up", "--data-dir", str(data_dir), "--port", str(port)]
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _ready(
    http: aiohttp.ClientSession, base: str, proc: asyncio.subprocess.Process, log: Path
) -> None:
    for _ in range(600):
        assert proc.returncode is None, log.read_text()[-3000:]
        try:
            async with http.get(f"{base}/readyz") as resp:
                if resp.status == 200 and "DeployForge is up" in log.read_text():
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(log.read_text()[-3000:])


async def _login(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(
        f"{base}/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
    ) as resp:
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["access_token"]
        return token


def _children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _auth_pids(pid: int) -> list[int]:
    """Live auth service processes under `up` (a killed one is a zombie until reaped)."""
    found = []
    for child in _children(pid):
        try:
            if "services.auth.main" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


async def _ui_sign_in(ui: aiohttp.ClientSession, base: str) -> None:
    """Through the web UI's form, as a browser would (its cookie lands in `ui`'s jar)."""
    async with ui.get(f"{base}/ui/login") as resp:
        page = await resp.text()
    login_csrf = page.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
    async with ui.post(
        f"{base}/ui/login",
        data={"login_csrf": login_csrf, "email": EMAIL, "password": PASSWORD},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303, await resp.text()


async def _ui_overview(ui: aiohttp.ClientSession, base: str) -> int:
    async with ui.get(f"{base}/ui/", allow_redirects=False) as resp:
        assert resp.status != 200 or "Overview" in await resp.text()
        return resp.status


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    # DESIGN: everything stops within 10 s; allow slack for a loaded machine.
    assert await asyncio.wait_for(proc.wait(), timeout=30) == 0


async def test_up_serves_restarts_crashed_services_and_resumes(data_root: Path) -> None:
    data_dir, log, port = data_root / "data", data_root / "up.log", free_port()
    base = f"http://127.0.0.1:{port}"
    ui = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with aiohttp.ClientSession() as http, ui:
        proc = await _up(data_dir, port, log)
        try:
            await _ready(http, base, proc, log)
            # The web UI reaches the API over the gateway's own socket.
            await _ui_sign_in(ui, base)
            assert await _ui_overview(ui, base) == 200
            token = await _login(http, base)
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(
                f"{base}/v1/organizations", json={"name": "Persisted"}, headers=headers
            ) as resp:
                assert resp.status == 201
            auth_metrics = log.read_text().split("(gateway), ", 1)[1].split(" (auth)", 1)[0]
            async with http.get(auth_metrics) as resp:
                scraped = await resp.text()
            assert 'deployforge_commands_total{command="login",outcome="ok",service="auth"}' in (
                scraped
            )
            [killed] = _auth_pids(proc.pid)
            os.kill(killed, signal.SIGKILL)
            for _ in range(200):
                alive = _auth_pids(proc.pid)
                if alive and alive != [killed]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the supervisor did not restart the auth service")
            await _ready(http, base, proc, log)
            await _login(http, base)
            all_children = _children(proc.pid)
        finally:
            await _stop(proc)
        assert not [p for p in all_children if _alive(p)], "up left processes behind"
        text = log.read_text()
        assert "auth | " in text and "gateway | " in text
        assert PASSWORD not in text

        log = data_root / "up-again.log"  # its own file: "is up" of the first run must not count
        proc = await _up(data_dir, port, log)
        try:
            await _ready(http, base, proc, log)
            token = await _login(http, base)
            async with http.get(
                f"{base}/v1/organizations", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                names = [o["name"] for o in (await resp.json())["items"]]
            assert "Persisted" in names
            assert "administrator already exists" in log.read_text()
            # The UI's session was kept in PostgreSQL: still signed in after the restart.
            assert await _ui_overview(ui, base) == 200
        finally:
            await _stop(proc)
