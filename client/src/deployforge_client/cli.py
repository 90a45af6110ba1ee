"""`dfctl`: DeployForge from a terminal or a script, on the public /v1 API.

Imports stay light at start (`dfctl --help` loads click only); the SDK and httpx are
imported by the commands that talk to a server. Notices go to stderr; stdout holds only
what was asked for (`-o json|ndjson|id` for scripts). Off a TTY nothing prompts: a
missing flag is exit 2, naming it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from deployforge_client import cli_contexts
from deployforge_client.cli_auth import auth
from deployforge_client.cli_credentials import (
    client,
    confirm,
    exit_code,
    fail,
    read_json_option,
)
from deployforge_client.cli_follow import follow
from deployforge_client.cli_operations import completion, drift, events, status, step, vars_
from deployforge_client.cli_output import LIST_OUTPUTS, ONE_OUTPUTS, emit_list, emit_one
from deployforge_client.cli_resource_actions import (
    certificates,
    domain_actions,
    pipeline_actions,
    webhook_actions,
)
from deployforge_client.cli_resources import RESOURCES, register

if TYPE_CHECKING:
    from deployforge_client import DeployForge
    from deployforge_client.models import Deployment

EXIT_CODES = {
    0: "success (for deploy and wait: the deployment succeeded)",
    1: "any other error (the message says which)",
    2: "usage: a flag or argument missing or invalid",
    3: "the deployment failed or was cancelled",
    4: "not authenticated: log in (dfctl auth login) or set DEPLOYFORGE_TOKEN",
    5: "forbidden: the credential lacks the scope or role",
    6: "not found",
    8: "the wait timed out (the deployment goes on)",
}


class Group(click.Group):
    """Turns the SDK's errors into a message on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # The reader went away (`dfctl logs -f | head`): end quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except Exception as exc:
            from deployforge_client.errors import DeployForgeError

            if not isinstance(exc, DeployForgeError):
                raise
            fail(exit_code(exc), str(exc))


# --- commands ------------------------------------------------------------------------------


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--context", "context_name", envvar="DEPLOYFORGE_CONTEXT",
              help="Use this context (server and organization) for this command.")  # fmt: skip
def main(context_name: str | None) -> None:
    """DeployForge: deploy, follow, roll back. `dfctl help exit-codes` for scripts."""
    cli_contexts.chosen = context_name


main.add_command(auth)
main.add_command(cli_contexts.context)
for command in (status, vars_, drift, step, events, completion, certificates):
    main.add_command(command)
EXTRA_ACTIONS = {"webhooks": webhook_actions, "domains": domain_actions,
                 "pipelines": pipeline_actions}  # fmt: skip
for resource in RESOURCES:
    group = register(main, resource)
    if resource.group in EXTRA_ACTIONS:
        EXTRA_ACTIONS[resource.group](group)


@main.group()
def deployments() -> None:
    """List, view, cancel and wait for deployments."""


@deployments.command("list")
@click.option("--service", "service_id", help="Only this service's.")
@click.option("--env", "environment_id", help="Only this environment's.")
@click.option("--status", help="Only deployments in this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("-o", "--output", type=LIST_OUTPUTS, default="table")
def list_deployments(
    service_id: str | None, environment_id: str | None, status: str | None, limit: int, output: str
) -> None:
    """Newest first."""
    with client() as df:
        found = []
        filters = {"service_id": service_id, "environment_id": environment_id, "status": status}
        for deployment in df.paginate("/v1/deployments", **filters):
            found.append(deployment)
            if len(found) >= limit:
                break
    emit_list(found, output, ["id", "service_id", "environment_id", "status", "created_at"])


@main.command()
@click.argument("service_id")
@click.option("--env", "environment_id", required=True, help="The environment to deploy to.")
@click.option("--ref", help="A branch, tag or commit (default: the service's branch).")
@click.option("--strategy", type=click.Choice(["blue-green", "rolling", "recreate"]))
@click.option("--detach", is_flag=True, help="Print the deployment's id and return.")
@click.option("--timeout", type=float, default=1800, show_default=True, help="Seconds to wait.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "id"]), default="text")
def deploy(
    service_id: str,
    environment_id: str,
    ref: str | None,
    strategy: str | None,
    detach: bool,
    timeout: float,
    output: str,
) -> None:
    """Deploy SERVICE_ID to --env and follow it: its steps and log lines as they come.
    Exit 0 when it succeeds, 3 when it fails or is cancelled."""
    with client() as df:
        run = df.services.deploy(service_id, environment_id=environment_id, ref=ref,
                                 strategy=strategy)  # fmt: skip
        click.echo(f"Deployment {run.id} created.", err=True)
        if detach:
            _show(run.data, output)
            return
        follow(df, run.id, output, timeout)


@main.command()
@click.argument("deployment_id")
@click.option("--to", "to_deployment_id", help="The deployment whose release to go back to.")
@click.option("--yes", is_flag=True, help="Do not ask (required off a terminal).")
@click.option("--detach", is_flag=True, help="Print the new deployment's id and return.")
@click.option("--timeout", type=float, default=1800, show_default=True)
@click.option("-o", "--output", type=click.Choice(["text", "json", "id"]), default="text")
def rollback(
    deployment_id: str,
    to_deployment_id: str | None,
    yes: bool,
    detach: bool,
    timeout: float,
    output: str,
) -> None:
    """Go back from DEPLOYMENT_ID to the release of the previous good deployment (or
    --to's): shows the target's commit, ref and age, and asks, first."""
    from deployforge_client._core import path

    with client() as df:
        current = df.deployments.get(deployment_id)
        target = (
            df.deployments.get(to_deployment_id)
            if to_deployment_id
            else _previous_good(df, current)
        )
        if target is None:
            fail(1, "no earlier succeeded deployment of that service there to go back to")
        age = _age(target.get("finished_at") or target.get("created_at"))
        commit = str(target.get("commit_hash") or "?")[:12]
        click.echo(
            f"Roll back {current['service_id']} in {current['environment_id']} to"
            f" {target['id']}: commit {commit}, ref {target.get('ref') or '?'}, {age}.",
            err=True,
        )
        confirm(yes, "Roll back?")
        body = {"to_deployment_id": target["id"]}
        created = df.post(path("/v1/deployments/{}/rollback", deployment_id), body)
        click.echo(f"Deployment {created['id']} created.", err=True)
        if detach:
            _show(created, output)
            return
        follow(df, created["id"], output, timeout)


def _previous_good(df: DeployForge, current: Deployment) -> Deployment | None:
    for deployment in df.deployments.list(
        service_id=current["service_id"],
        environment_id=current["environment_id"],
        status="succeeded",
    ):
        if deployment["id"] != current["id"] and deployment["created_at"] < current["created_at"]:
            return deployment
    return None


def _age(when: str | None) -> str:
    from datetime import UTC, datetime

    if not when:
        return "of unknown age"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(when)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


@deployments.command("view")
@click.argument("deployment_id")
@click.option("-o", "--output", type=ONE_OUTPUTS, default="text")
def view_deployment(deployment_id: str, output: str) -> None:
    """One deployment: status, commit, progress."""
    with client() as df:
        deployment = df.deployments.get(deployment_id)
    emit_one(deployment, output, ["id", "service_id", "environment_id", "status", "ref",
                                  "commit_hash", "progress", "created_at", "finished_at",
                                  "failure_reason"])  # fmt: skip


@deployments.command("cancel")
@click.argument("deployment_id")
def cancel_deployment(deployment_id: str) -> None:
    """Cancel a queued or running deployment."""
    with client() as df:
        cancelled = df.deployments.cancel(deployment_id)
    click.echo(f"{cancelled['id']} {cancelled['status']}", err=True)


@deployments.command("wait")
@click.argument("deployment_id")
@click.option("--timeout", type=float, default=1800, show_default=True)
def wait_deployment(deployment_id: str, timeout: float) -> None:
    """Until it ends: exit 0 succeeded, 3 failed or cancelled, 8 timed out."""
    with client() as df:
        final = df.deployments.wait(deployment_id, timeout=timeout)
    click.echo(f"{final['id']} {final['status']}", err=True)
    if final["status"] != "succeeded":
        sys.exit(3)


@main.command()
@click.argument("deployment_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing lines as they come.")
@click.option("--tail", type=click.IntRange(1, 10_000), help="Only the last N lines.")
@click.option("--since", help="Only lines at or after this time (RFC 3339).")
def logs(deployment_id: str, follow: bool, tail: int | None, since: str | None) -> None:
    """A deployment's log, a line each (flushed, so `| grep` sees each at once)."""
    from deployforge_client._core import path

    route = path("/v1/deployments/{}/logs", deployment_id)
    with client() as df:
        if follow:
            for event in df.events(route, follow=True, tail=tail, since=since):
                if event.event == "log" and isinstance(event.data, dict):
                    click.echo(event.data.get("line", ""))
                elif event.event == "end":
                    return
            return
        answer = df.get(route, tail=tail, since=since)
    for line in answer["lines"]:
        click.echo(line["line"])


def _show(deployment: Mapping[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(deployment, indent=2))
    elif output == "id":
        click.echo(deployment["id"])
    else:
        click.echo(f"{deployment['id']} {deployment['status']}", err=True)


@main.command("api")
@click.argument("method", type=click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE"],
                                            case_sensitive=False))  # fmt: skip
@click.argument("path")
@click.option("-d", "--data", help="A JSON body (@file reads it from a file, - from stdin).")
def api(method: str, path: str, data: str | None) -> None:
    """Any route: `dfctl api GET /v1/projects`. The answer's JSON on stdout."""
    body = read_json_option(data) if data is not None else None
    if not path.startswith("/"):
        fail(2, "PATH starts with /, e.g. /v1/projects")
    with client() as df:
        answer = df.request(method.upper(), path, json=body)
    if answer is not None:
        click.echo(json.dumps(answer, indent=2))


@main.group("help")
def help_() -> None:
    """Topics: exit-codes."""


@help_.command("exit-codes")
def exit_codes() -> None:
    """What dfctl's exit status means."""
    for code, meaning in EXIT_CODES.items():
        click.echo(f"{code}  {meaning}")
