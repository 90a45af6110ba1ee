"""dfctl's credential: where it is kept (the environment first, then a 0600 file in the
XDG config directory), the client made with it, and how a command ends in failure."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from deployforge_client import DeployForge


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "deployforge" / "config.json"


def load_config() -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(config_path().read_text())
        return loaded
    except (OSError, ValueError):
        return {}


def save_config(config: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    os.replace(temporary, path)


def credentials() -> tuple[str | None, str | None, str]:
    """API URL, token and where they came from; the environment wins."""
    stored = load_config()
    url = os.environ.get("DEPLOYFORGE_API_URL") or stored.get("api_url")
    if os.environ.get("DEPLOYFORGE_TOKEN"):
        return url, os.environ["DEPLOYFORGE_TOKEN"], "the DEPLOYFORGE_TOKEN variable"
    if stored.get("token"):
        return url, str(stored["token"]), f"{config_path()} (a file, mode 0600)"
    return url, None, "nowhere"


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
