"""dfctl's credential: the environment's first, then the current context's (see
cli_contexts: the keyring, or a 0600 file); the client made with it; and how a
command ends in failure."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from deployforge_client.cli_contexts import config_path, current, token_of

if TYPE_CHECKING:
    from deployforge_client import DeployForge


def credentials() -> tuple[str | None, str | None, str]:
    """API URL, token and where they came from; the environment wins over the current
    context (`--context`, DEPLOYFORGE_CONTEXT, or `dfctl context use`)."""
    name, context = current()
    url = os.environ.get("DEPLOYFORGE_API_URL") or context.get("api_url")
    if os.environ.get("DEPLOYFORGE_TOKEN"):
        return url, os.environ["DEPLOYFORGE_TOKEN"], "the DEPLOYFORGE_TOKEN variable"
    token, where = token_of(name, context)
    return url, token, where


# How long a write's consistency token is sent on the next invocations' reads.
CONSISTENCY_SECONDS = 60.0


def client() -> DeployForge:
    """The client for this invocation. The last write's consistency token is kept for a
    minute (beside the config) and sent on reads, so that `dfctl tokens delete` then
    `dfctl tokens list` already shows the change (read-your-writes across commands)."""
    import atexit
    import time

    from deployforge_client import DeployForge

    url, token, _ = credentials()
    if not token:
        fail(4, "not logged in: run `dfctl auth login`, or set DEPLOYFORGE_TOKEN")
    df = DeployForge(url, token)
    kept = config_path().with_name("consistency.json")
    try:
        last = json.loads(kept.read_text())
        if last.get("api_url") == url and time.time() - last["at"] < CONSISTENCY_SECONDS:
            df.consistency_token = last["token"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    before = df.consistency_token

    def keep() -> None:
        if df.consistency_token and df.consistency_token != before:
            try:
                kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                body = {"api_url": url, "token": df.consistency_token, "at": time.time()}
                kept.write_text(json.dumps(body))
            except OSError:
                pass  # a read-only home: reads are only eventually consistent then

    atexit.register(keep)
    return df


def confirm(yes: bool, question: str) -> None:
    """Ask on a terminal; off one, `--yes` is required (exit 2), never a prompt."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(2, "--yes is required when stdin is not a terminal")
    click.confirm(question, abort=True, err=True)


def read_json_option(data: str) -> Any:
    """A `-d/--data` value: JSON itself, `@file`, or `-` for stdin (exit 2 if not JSON)."""
    from pathlib import Path

    text = sys.stdin.read() if data == "-" else (
        Path(data[1:]).read_text() if data.startswith("@") else data
    )  # fmt: skip
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(2, f"--data is not JSON: {exc}")


def api_path(template: str, *values: str) -> str:
    """`path()` of the SDK's core, imported when a command runs (not at start)."""
    from deployforge_client._core import path

    return path(template, *values)


def fail(code: int, message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_code(exc: Exception) -> int:
    from deployforge_client import errors

    return {
        errors.AuthenticationRequired: 4,
        errors.AuthorizationDenied: 5,
        errors.NotFound: 6,
        errors.WaitTimedOut: 8,
        errors.ValidationError: 2,
    }.get(type(exc), 1)
