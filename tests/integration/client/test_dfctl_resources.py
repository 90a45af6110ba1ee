"""dfctl beyond deploy, as a subprocess against a running suite: projects, environments
and services made and changed by flags, `-o json|yaml|ndjson|id` holding only that,
variables set from stdin with secrets masked, tokens shown once and revoked, a webhook
tested and its delivery listed, status, instances, the audit trail, the WebSocket's
events as NDJSON while a deployment runs, `step report` outside a deployment, shell
completion, and deploy's live view on a real terminal (a pty) that honours NO_COLOR."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import time
from pathlib import Path

import yaml

from tests.conftest import Stack
from tests.integration.client.test_dfctl import DFCTL, _dfctl
from tests.integration.deploy.test_agent_deploys import commit_version, repo, workspace
from tests.receivers import Receivers

__all__ = ["repo", "workspace"]  # fixtures, used by name


async def _login(stack: Stack, home: Path) -> None:
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

    base = str(stack.client.make_url("")).rstrip("/")
    code, _, err = await _dfctl(
        home, "auth", "login", "--api-url", base, "--email", ADMIN_EMAIL, "--password-stdin",
        stdin=f"{ADMIN_PASSWORD}\n".encode(),
    )  # fmt: skip
    assert code == 0, err


async def test_dfctl_manages_resources_and_prints_only_what_was_asked(
    stack: Stack, repo: Path, workspace: Path, receivers: Receivers
) -> None:
    await stack.start_webhooks()
    await stack.start("audit")
    home = workspace / "config"
    await _login(stack, home)

    code, out, err = await _dfctl(home, "projects", "create", "--name", "Shop", "-o", "json")
    assert code == 0, err
    project = json.loads(out)  # stdout is the JSON; "Created ..." went to stderr
    assert project["name"] == "Shop" and "Created project" in err
    code, out, _ = await _dfctl(home, "projects", "list", "-o", "yaml")
    assert code == 0 and [p["id"] for p in yaml.safe_load(out)] == [project["id"]]
    code, out, _ = await _dfctl(home, "projects", "update", project["id"], "--description",
                                "the shop", "-o", "id")  # fmt: skip
    assert code == 0 and out == project["id"] + "\n"
    code, _, err = await _dfctl(home, "projects", "update", project["id"])
    assert code == 2 and "nothing to change" in err
    code, _, err = await _dfctl(home, "projects", "create")
    assert code == 2 and "--name" in err  # no prompt: the missing flag is named

    code, env_id, err = await _dfctl(home, "envs", "create", "--name", "prod", "-o", "id")
    assert code == 0, err
    env_id = env_id.strip()
    code, out, err = await _dfctl(
        home, "services", "create", "--project", project["id"], "--name", "web",
        "--repo", f"file://{repo}", "--build-command", "python build.py",
        "--run-command", "python app.py", "--health-check-path", "/health", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    service = json.loads(out)
    code, out, _ = await _dfctl(home, "services", "list", "-o", "ndjson")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["web"]
    code, out, _ = await _dfctl(home, "services", "list")  # piped: rows, no header
    assert out.split()[:2] == [service["id"], "web"]

    code, _, err = await _dfctl(home, "vars", "set", service["id"], "GREETING=-", "--secret",
                                stdin=b"hello from stdin\n")  # fmt: skip
    assert code == 0, err
    code, _, err = await _dfctl(home, "vars", "set", service["id"], "MODE=fast")
    assert code == 0, err
    code, out, _ = await _dfctl(home, "vars", "list", service["id"], "-o", "json")
    values = {v["key"]: v["value"] for v in json.loads(out)}
    assert values == {"GREETING": "••••••", "MODE": "fast"}
    assert "hello from stdin" not in out
    code, _, _ = await _dfctl(home, "vars", "unset", service["id"], "MODE")
    code, out, _ = await _dfctl(home, "vars", "list", service["id"], "-o", "id")
    assert out.split() == ["GREETING"]

    code, out, err = await _dfctl(home, "tokens", "create", "--name", "ci", "--scope", "read",
                                  "--scope", "deploy", "-o", "json")  # fmt: skip
    assert code == 0, err
    issued = json.loads(out)
    assert issued["token"].startswith("df")
    code, _, err = await _dfctl(home, "tokens", "delete", issued["id"])
    assert code == 2 and "--yes" in err  # off a terminal it does not ask
    code, _, err = await _dfctl(home, "tokens", "delete", issued["id"], "--yes")
    assert code == 0, err
    code, out, _ = await _dfctl(home, "tokens", "list", "-o", "json")
    [revoked] = [t for t in json.loads(out) if t["id"] == issued["id"]]
    assert revoked["revoked_at"] is not None

    receiver = await receivers()
    code, out, err = await _dfctl(home, "webhooks", "create", "--url", receiver.url,
                                  "--event", "deployment.*", "-o", "json")  # fmt: skip
    assert code == 0, err
    hook = json.loads(out)
    code, _, err = await _dfctl(home, "webhooks", "test", hook["id"])
    assert code == 0, err
    await receiver.wait_for(lambda got: any(r.payload.get("type") == "webhook.ping" for r in got))
    for _ in range(40):
        code, out, _ = await _dfctl(home, "webhooks", "deliveries", hook["id"], "-o", "json")
        if [d for d in json.loads(out) if d["status"] == "succeeded"]:
            break
        await asyncio.sleep(0.25)
    assert [d["event_type"] for d in json.loads(out)] == ["webhook.ping"]

    # Events over the WebSocket while a deployment runs, each one JSON line.
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFORGE_")}
    env["XDG_CONFIG_HOME"] = str(home)
    watcher = await asyncio.create_subprocess_exec(
        DFCTL, "events", "--service", service["id"], env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watcher.stderr is not None and watcher.stdout is not None
    assert "Connected" in (await asyncio.wait_for(watcher.stderr.readline(), 30)).decode()
    code, _, err = await _dfctl(home, "deploy", service["id"], "--env", env_id)
    assert code == 0, err
    seen = []
    while not any(e.get("type") == "deployment.succeeded" for e in seen):
        seen.append(json.loads(await asyncio.wait_for(watcher.stdout.readline(), 30)))
    watcher.terminate()
    await watcher.wait()
    assert seen[0]["type"] == "deployment.created"

    code, out, err = await _dfctl(home, "status", "-o", "json")
    assert code == 0, err
    assert [s["name"] for s in json.loads(out)["services"]] == ["web"]
    code, out, _ = await _dfctl(home, "instances", "list", "--service", service["id"], "-o", "id")
    assert code == 0 and len(out.split()) == 1 and out.startswith("dpl_")  # {deployment}-{n}
    code, out, _ = await _dfctl(home, "audit", "list", "--resource", service["id"], "-o", "json")
    assert code == 0 and "service.created" in {e["event_type"] for e in json.loads(out)}

    code, _, err = await _dfctl(home, "step", "report", "build", "--state", "running")
    assert code == 4 and "DEPLOYFORGE_DEPLOYMENT_TOKEN" in err
    code, out, _ = await _dfctl(home, "completion", "bash")
    assert code == 0 and "_DFCTL_COMPLETE" in out and "complete " in out


async def test_deploy_on_a_terminal_shows_the_live_view(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    """On a TTY the steps are drawn with marks and durations and the progress bar; the
    log still arrives; with NO_COLOR no colour escape is written."""
    from tests.integration.deploy.test_agent_deploys import make_service

    home = workspace / "config"
    await _login(stack, home)
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo)
    commit_version(repo, "v2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFORGE_")}
    env |= {"XDG_CONFIG_HOME": str(home), "NO_COLOR": "1", "TERM": "xterm", "COLUMNS": "100"}
    code, screen = await asyncio.to_thread(
        _in_a_pty, [DFCTL, "deploy", deployer.service, "--env", deployer.env], env
    )
    assert code == 0, screen
    assert "building v2" in screen
    assert re.search(r"✓ +fetch", screen) and re.search(r"✓ +health_check", screen), screen
    assert "100%" in screen
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", screen)  # NO_COLOR: no foreground colour


def _in_a_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run argv with stdin, stdout and stderr on a pseudo-terminal; its exit status and
    everything it drew."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execve(argv[0], argv, env)  # noqa: S606 (argv[0] is dfctl's absolute path)
    chunks = []
    deadline = time.monotonic() + 180
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


async def _dfctl_env(home: Path, extra: dict[str, str], *args: str, stdin: bytes | None = None
                     ) -> tuple[int, str, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFORGE_")}
    env |= {"XDG_CONFIG_HOME": str(home), **extra}
    process = await asyncio.create_subprocess_exec(
        DFCTL, *args, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_contexts_keep_servers_and_organizations_apart_and_the_keyring_is_used(
    stack: Stack, workspace: Path
) -> None:
    """Two contexts (one per organization); the keyring keeps the token when there is one
    (keyrings.alt's file backend stands in for a desktop's here), the 0600 file when not."""
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

    home = workspace / "config"
    base = str(stack.client.make_url("")).rstrip("/")
    ring = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "XDG_DATA_HOME": str(workspace / "data")}  # fmt: skip
    login = ("auth", "login", "--api-url", base, "--email", ADMIN_EMAIL, "--password-stdin")
    password = f"{ADMIN_PASSWORD}\n".encode()
    code, _, err = await _dfctl_env(home, ring, *login, "--context", "main", stdin=password)
    assert code == 0, err
    assert "system keyring" in err and "warning" not in err
    config = json.loads((home / "deployforge" / "config.json").read_text())
    assert "token" not in config["contexts"]["main"], config  # it is in the keyring
    kept = (workspace / "data" / "python_keyring" / "keyring_pass.cfg").read_text()
    assert "[deployforge]" in kept and "main = " in kept

    resp = await stack.client.post("/v1/organizations", json={"name": "Side Org"},
                                   headers=stack.auth())  # fmt: skip
    assert resp.status in (200, 201), await resp.text()
    side = (await resp.json())["id"]
    code, _, err = await _dfctl_env(home, {}, *login, "--context", "side", "--org", side,
                                    stdin=password)  # fmt: skip
    assert code == 0 and "0600" in err, err  # no keyring chosen here: the file, said so

    code, out, _ = await _dfctl_env(home, {}, "context", "list")
    assert "* side" in out and "  main" in out and side in out
    code, _, err = await _dfctl_env(home, {}, "projects", "create", "--name", "Side project")
    assert code == 0, err
    code, out, _ = await _dfctl_env(home, ring, "--context", "main", "projects", "list", "-o",
                                    "json")  # fmt: skip
    assert "Side project" not in [p["name"] for p in json.loads(out)]
    code, out, _ = await _dfctl_env(home, {}, "projects", "list", "-o", "json")
    assert [p["name"] for p in json.loads(out)] == ["Side project"]

    code, _, _ = await _dfctl_env(home, {}, "context", "use", "main")
    code, out, _ = await _dfctl_env(home, ring, "auth", "status")
    assert code == 0 and "context main" in out and "system keyring" in out
    code, _, err = await _dfctl_env(home, ring, "auth", "logout")
    assert code == 0, err
    kept = (workspace / "data" / "python_keyring" / "keyring_pass.cfg").read_text()
    assert "main" not in kept  # logging out took the token out of the keyring
    code, _, err = await _dfctl_env(home, ring, "projects", "list")
    assert code == 4


DFCTL_BUILD = """
import os, subprocess
dfctl = os.environ["DFCTL_PATH"]
subprocess.run([dfctl, "step", "report", "migrate", "--state", "running"], check=True)
subprocess.run([dfctl, "step", "report", "migrate", "--state", "success",
                "--message", "2 migrations"], check=True)
print("reported")
"""


async def test_a_deployments_script_reports_its_steps_with_dfctl(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    """`dfctl step report` inside a build: the agent gives the script its deployment's id,
    token and the API's address; dfctl needs nothing else (no login)."""
    from tests.integration.deploy.test_agent_deploys import _git, make_service

    api = str(stack.client.make_url("")).rstrip("/")
    await stack.start_agent(workspace / "agent", api_url=api, drain_seconds=0.2)
    (repo / "report.py").write_text(DFCTL_BUILD)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a build that reports with dfctl")
    deployer = await make_service(stack, repo, build_command="python report.py")
    resp = await stack.client.put(f"/v1/services/{deployer.service}/env/DFCTL_PATH",
                                  json={"value": DFCTL}, headers=stack.auth())  # fmt: skip
    assert resp.status == 200, await resp.text()
    deployment = await deployer.ended((await deployer.start())["id"])
    assert deployment["status"] == "succeeded", deployment
    resp = await stack.client.get(f"/v1/deployments/{deployment['id']}/steps",
                                  headers=stack.auth())  # fmt: skip
    [migrate] = [s for s in await resp.json() if s["name"] == "migrate"]
    assert migrate["state"] == "success" and migrate["message"] == "2 migrations"
