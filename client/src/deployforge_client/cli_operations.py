"""dfctl's commands that are not one resource's: `status`, `vars`, `drift`, `step` (for
scripts inside a deployment), `events` (the WebSocket, as NDJSON) and `completion`."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from deployforge_client.cli_credentials import api_path, client, fail
from deployforge_client.cli_output import LIST_OUTPUTS, ONE_OUTPUTS, emit_list, emit_one, notice


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
def status(output: str) -> None:
    """Services with their health, and the deployments running or queued."""
    with client() as df:
        services = df.get("/v1/services", limit=200)["items"]
        rows = []
        for service in services:
            health = df.get(api_path("/v1/services/{}/health", service["id"]))
            rows.append({"id": service["id"], "name": service["name"],
                         "health": health["status"], "score": health["score"]})  # fmt: skip
        active = [
            d for wanted in ("running", "queued")
            for d in df.get("/v1/deployments", status=wanted, limit=200)["items"]
        ]  # fmt: skip
    if output != "table":
        emit_one({"services": rows, "deployments": active}, output)
        return
    emit_list(rows, "table", ["id", "name", "health", "score"])
    if active or sys.stdout.isatty():
        click.echo("")
        emit_list(active, "table", ["id", "service_id", "environment_id", "status",
                                    "current_step", "progress"])  # fmt: skip


@click.group("vars")
def vars_() -> None:
    """A service's environment variables (a secret's value is never shown again)."""


@vars_.command("list")
@click.argument("service_id")
@click.option("-o", "--output", type=LIST_OUTPUTS, default="table")
def list_vars(service_id: str, output: str) -> None:
    """Names, and values unless secret."""
    with client() as df:
        found = df.get(api_path("/v1/services/{}/env", service_id))
    rows = [{"id": v["key"], **v, "value": "••••••" if v["secret"] else v["value"]}
            for v in found]  # fmt: skip
    emit_list(rows, output, ["key", "value", "secret", "updated_at"])


@vars_.command("set")
@click.argument("service_id")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--secret", is_flag=True, help="Never show the values again.")
def set_vars(service_id: str, pairs: tuple[str, ...], secret: bool) -> None:
    """Set variables; `KEY=-` reads that value from stdin (keeps it out of the shell's
    history). They apply at the next deployment or restart."""
    parsed = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(2, f"give KEY=VALUE, not {pair!r}")
        if value == "-":
            value = sys.stdin.read().rstrip("\n")
        parsed.append((key, value))
    with client() as df:
        for key, value in parsed:
            df.put(api_path("/v1/services/{}/env/{}", service_id, key),
                   {"value": value, "secret": secret})  # fmt: skip
    notice(f"Set {', '.join(k for k, _ in parsed)} on {service_id}.")


@vars_.command("unset")
@click.argument("service_id")
@click.argument("keys", nargs=-1, required=True)
def unset_vars(service_id: str, keys: tuple[str, ...]) -> None:
    """Remove variables."""
    with client() as df:
        for key in keys:
            df.delete(api_path("/v1/services/{}/env/{}", service_id, key))
    notice(f"Removed {', '.join(keys)} from {service_id}.")


@click.group()
def drift() -> None:
    """Scan an environment for drift; list its findings."""


@drift.command("scan")
@click.argument("environment_id")
@click.option("--wait/--no-wait", default=True, help="Until the scan ends (default).")
@click.option("--timeout", type=float, default=300, show_default=True)
@click.option("-o", "--output", type=ONE_OUTPUTS, default="text")
def scan(environment_id: str, wait: bool, timeout: float, output: str) -> None:
    """Compare what was declared and deployed with what runs. Exit 0 once it completed
    (findings or not), 1 when it failed, 8 when the wait timed out."""
    deadline = time.monotonic() + timeout
    with client() as df:
        found = df.post(api_path("/v1/environments/{}/drift-scans", environment_id), {})
        notice(f"Scan {found['id']} started.")
        while wait and found["status"] == "running":
            if time.monotonic() > deadline:
                fail(8, f"scan {found['id']} still running after {timeout:g} s")
            time.sleep(0.5)
            found = df.get(api_path("/v1/drift-scans/{}", found["id"]))
    emit_one(found, output, ["id", "status", "drifts_detected", "critical", "new", "resolved",
                             "resources", "error"])  # fmt: skip
    if found["status"] == "failed":
        sys.exit(1)


@drift.command("findings")
@click.argument("environment_id")
@click.option("--state", help="open, acknowledged, ignored or resolved.")
@click.option("--severity", help="low, medium, high or critical.")
@click.option("-o", "--output", type=LIST_OUTPUTS, default="table")
def findings(environment_id: str, state: str | None, severity: str | None, output: str) -> None:
    """An environment's findings."""
    with client() as df:
        items = list(df.paginate(api_path("/v1/environments/{}/drift-findings", environment_id),
                                 state=state, severity=severity))  # fmt: skip
    emit_list(items, output, ["id", "address", "kind", "severity", "state", "last_seen"])


@click.group()
def step() -> None:
    """For scripts a deployment runs: report a step, or finish it (they get
    DEPLOYFORGE_DEPLOYMENT_ID, _TOKEN and DEPLOYFORGE_API_URL)."""


def _deployment_client() -> tuple[Any, str]:
    from deployforge_client import DeployForge

    deployment_id = os.environ.get("DEPLOYFORGE_DEPLOYMENT_ID")
    token = os.environ.get("DEPLOYFORGE_DEPLOYMENT_TOKEN")
    if not deployment_id or not token:
        fail(4, "DEPLOYFORGE_DEPLOYMENT_ID and DEPLOYFORGE_DEPLOYMENT_TOKEN are not set:"
                " this runs inside a deployment's script")  # fmt: skip
    return DeployForge(os.environ.get("DEPLOYFORGE_API_URL"), token), deployment_id


@step.command("report")
@click.argument("name")
@click.option("--state", required=True,
              type=click.Choice(["pending", "running", "success", "failure"]))  # fmt: skip
@click.option("--message", default="", help="What happened.")
@click.option("--error", "error_message", default="", help="Why it failed.")
def report(name: str, state: str, message: str, error_message: str) -> None:
    """Report the state of step NAME of this deployment."""
    df, deployment_id = _deployment_client()
    with df:
        df.post(api_path("/v1/deployments/{}/steps", deployment_id),
                {"name": name, "state": state, "message": message,
                 "error_message": error_message})  # fmt: skip


@step.command("finish")
@click.option("--status", "outcome", type=click.Choice(["success", "failure"]), default="success")
@click.option("--message", default="")
def finish(outcome: str, message: str) -> None:
    """Finish this (script-driven) deployment."""
    df, deployment_id = _deployment_client()
    with df:
        df.put(api_path("/v1/deployments/{}/finish", deployment_id),
               {"status": outcome, "message": message})  # fmt: skip


@click.command()
@click.option("--service", "service_id", help="Only this service's deployments.")
@click.option("--deployment", "deployment_id", help="Only this deployment's events.")
@click.option("--event", "events", multiple=True, help="Only this event type; repeat for more.")
def events(service_id: str | None, deployment_id: str | None, events: tuple[str, ...]) -> None:
    """Deployment events as they happen (the WebSocket), one JSON object per line."""
    from httpx_ws import WebSocketDisconnect, WebSocketSession, connect_ws

    from deployforge_client.cli_credentials import credentials

    url, token, _ = credentials()
    if not token:
        fail(4, "not logged in: run `dfctl auth login`, or set DEPLOYFORGE_TOKEN")
    base = (url or "http://127.0.0.1:8080").rstrip("/")
    hello: dict[str, Any] = {"access_token": token}
    hello |= {k: v for k, v in (("service_id", service_id), ("deployment_id", deployment_id),
                                ("events", list(events) or None)) if v}  # fmt: skip
    ws: WebSocketSession
    try:
        with connect_ws(base + "/v1/ws") as ws:
            ws.send_text(json.dumps(hello))
            answer = json.loads(ws.receive_text())
            if answer.get("status") != "success":
                fail(4, f"the WebSocket refused the credential: {answer.get('message', '')}")
            notice("Connected; events follow, one per line (Ctrl-C ends).")
            while True:
                click.echo(ws.receive_text())
                sys.stdout.flush()
    except KeyboardInterrupt:
        return
    except WebSocketDisconnect as exc:
        fail(1, f"the server closed the stream ({exc.code}): {exc.reason or ''}")


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """The shell completion script: `eval "$(dfctl completion bash)"` in ~/.bashrc."""
    from click.shell_completion import get_completion_class

    from deployforge_client.cli import main

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(main, {}, "dfctl", "_DFCTL_COMPLETE").source())
