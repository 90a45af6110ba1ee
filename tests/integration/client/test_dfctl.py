"""dfctl as a subprocess against a running suite: login keeps a named token (never the
password) in a 0600 file and says so; a real git app deployed with exit 0 and its log
on stdout; its log read back, followed and cut by `head` cleanly; a rollback shown,
refused off a TTY without --yes, then done; a failing build exits 3; `-o json` is JSON
and nothing else; off a TTY nothing prompts (exit 2 naming the flag); without a
credential, exit 4."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Stack
from tests.integration.deploy.test_agent_deploys import (  # the fixtures too
    commit_version,
    make_service,
    repo,
    workspace,
)

__all__ = ["repo", "workspace"]  # fixtures, used by name
DFCTL = str(Path(sys.executable).with_name("dfctl"))


async def _dfctl(
    home: Path, *args: str, stdin: bytes | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFORGE_")}
    env["XDG_CONFIG_HOME"] = str(home)
    process = await asyncio.create_subprocess_exec(
        DFCTL, *args, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _shell(home: Path, command: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFORGE_")}
    env["XDG_CONFIG_HOME"] = str(home)
    process = await asyncio.create_subprocess_shell(
        command, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_dfctl_logs_in_deploys_and_fails_with_the_documented_codes(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    home = workspace / "config"
    base = str(stack.client.make_url("")).rstrip("/")

    code, _, err = await _dfctl(home, "deployments", "list")
    assert code == 4 and "dfctl auth login" in err
    code, _, err = await _dfctl(home, "auth", "login", "--api-url", base)
    assert code == 2 and "--email" in err  # stdin is not a terminal: no prompt

    code, out, err = await _dfctl(
        home, "auth", "login", "--api-url", base, "--email", ADMIN_EMAIL, "--password-stdin",
        stdin=f"{ADMIN_PASSWORD}\n".encode(),
    )  # fmt: skip
    assert code == 0, err
    assert "mode 0600" in err and out == ""
    stored = home / "deployforge" / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert ADMIN_PASSWORD not in stored.read_text()
    assert json.loads(stored.read_text())["contexts"]["default"]["token"].startswith("df")
    code, out, _ = await _dfctl(home, "auth", "status")
    assert code == 0 and ADMIN_EMAIL in out and "0600" in out

    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, greeting="hello")
    code, out, err = await _dfctl(home, "deploy", deployer.service, "--env", deployer.env)
    assert code == 0, err
    assert "building v1" in out.splitlines(), out  # the build's own output, line by line
    assert "succeeded" in err

    code, out, _ = await _dfctl(home, "deployments", "list", "-o", "json")
    assert code == 0
    listed = json.loads(out)  # stdout holds the JSON and nothing else
    assert [d["status"] for d in listed] == ["succeeded"]

    [first] = [d["id"] for d in listed]
    code, out, _ = await _dfctl(home, "logs", first, "--tail", "50")
    assert code == 0 and "building v1" in out.splitlines()
    code, out, err = await _shell(home, f"{DFCTL} logs {first} -f | head -n 1")
    assert code == 0 and len(out.splitlines()) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err

    # A second release, then back to the first: shown, asked (refused off a TTY), done.
    commit_version(repo, "v2")
    code, _, err = await _dfctl(home, "deploy", deployer.service, "--env", deployer.env)
    assert code == 0, err
    code, out, _ = await _dfctl(home, "deployments", "list", "-o", "id")
    second = out.splitlines()[0]
    code, _, err = await _dfctl(home, "rollback", second)
    assert code == 2 and "--yes" in err and first in err  # the target was shown first
    code, out, err = await _dfctl(home, "rollback", second, "--yes", "-o", "json")
    assert code == 0, err
    rolled = json.loads(out)
    assert rolled["status"] == "succeeded"
    code, out, _ = await _dfctl(home, "deployments", "view", first, "-o", "json")
    assert rolled["commit_hash"] == json.loads(out)["commit_hash"]

    resp = await stack.client.patch(
        f"/v1/services/{deployer.service}",
        json={"build_command": "python -c 'raise SystemExit(1)'"},
        headers=stack.auth(),
    )
    assert resp.status == 200, await resp.text()
    code, out, err = await _dfctl(
        home, "deploy", deployer.service, "--env", deployer.env, "-o", "json"
    )
    assert code == 3, err
    assert json.loads(out)["status"] == "failed"
    code, _, _ = await _dfctl(home, "api", "GET", "/v1/deployments/dpl_nonexistent")
    assert code == 6
    code, _, err = await _dfctl(home, "deploy", deployer.service)
    assert code == 2 and "--env" in err
