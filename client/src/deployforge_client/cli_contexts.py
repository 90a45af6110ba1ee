"""dfctl's contexts: each a server and an organization with its own named API token,
kept in `$XDG_CONFIG_HOME/deployforge/config.json` (0600); the token itself goes to
the system's keyring when there is one (`pip install deployforge-client[keyring]`),
otherwise into that file, with a warning before it is written.

    dfctl auth login --context staging --api-url https://staging.example.com --org org_…
    dfctl context list | use NAME | current | delete NAME

`--context NAME` (or DEPLOYFORGE_CONTEXT) picks one for a single command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

KEYRING_SERVICE = "deployforge"
DEFAULT = "default"
# Set by the root command's --context option.
chosen: str | None = None


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "deployforge" / "config.json"


def load_config() -> dict[str, Any]:
    """The config, in its current shape (a file from before contexts becomes `default`)."""
    try:
        loaded: dict[str, Any] = json.loads(config_path().read_text())
    except (OSError, ValueError):
        loaded = {}
    if "contexts" not in loaded:
        flat = {k: v for k, v in loaded.items() if v is not None}
        loaded = {"current": DEFAULT, "contexts": {DEFAULT: flat} if flat else {}}
    return loaded


def save_config(config: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
    os.replace(temporary, path)


def current_name(config: dict[str, Any] | None = None) -> str:
    config = config if config is not None else load_config()
    return chosen or os.environ.get("DEPLOYFORGE_CONTEXT") or config.get("current") or DEFAULT


def current() -> tuple[str, dict[str, Any]]:
    config = load_config()
    name = current_name(config)
    return name, dict(config["contexts"].get(name, {}))


def _keyring() -> Any:
    """The keyring module when a real backend answers (the desktop's: priority 1 and up,
    or one chosen with PYTHON_KEYRING_BACKEND); None otherwise. keyrings.alt's
    plaintext file is no keyring: it is used only when chosen."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration: fall back to the file
        return None
    if isinstance(backend, fail.Keyring):
        return None
    if not os.environ.get("PYTHON_KEYRING_BACKEND") and getattr(backend, "priority", 0) < 1:
        return None
    return keyring


def token_of(name: str, context: dict[str, Any]) -> tuple[str | None, str]:
    """The context's token and where it is kept."""
    if context.get("token_store") == "keyring":
        ring = _keyring()
        secret = ring.get_password(KEYRING_SERVICE, name) if ring else None
        return secret, "the system keyring"
    if context.get("token"):
        return str(context["token"]), f"{config_path()} (a file, mode 0600)"
    return None, "nowhere"


def store(name: str, context: dict[str, Any], token: str) -> str:
    """Keep `context` (and its token) as `name`, make it current; where the token went."""
    ring = _keyring()
    context = {k: v for k, v in context.items() if k != "token"}
    if ring is not None:
        ring.set_password(KEYRING_SERVICE, name, token)
        context["token_store"] = "keyring"
        where = "the system keyring"
    else:
        click.echo(
            f"warning: no keyring here: the token is stored in {config_path()} (mode 0600)",
            err=True,
        )
        context |= {"token": token, "token_store": "file"}
        where = str(config_path())
    config = load_config()
    config["contexts"][name] = context
    config["current"] = name
    save_config(config)
    return where


def forget_token(name: str) -> None:
    config = load_config()
    context = config["contexts"].get(name, {})
    if context.get("token_store") == "keyring":
        ring = _keyring()
        if ring is not None:
            import contextlib

            from keyring.errors import PasswordDeleteError

            with contextlib.suppress(PasswordDeleteError):  # already gone
                ring.delete_password(KEYRING_SERVICE, name)
    config["contexts"][name] = {
        k: v for k, v in context.items() if k not in ("token", "token_store", "token_id")
    }
    save_config(config)


@click.group()
def context() -> None:
    """Servers and organizations you are logged in to; one is current."""


@context.command("list")
def list_contexts() -> None:
    """Every context (the current one starred)."""
    config = load_config()
    here = current_name(config)
    for name, ctx in sorted(config["contexts"].items()):
        org = ctx.get("organization_id") or "(your default organization)"
        mark = "*" if name == here else " "
        click.echo(f"{mark} {name}  {ctx.get('api_url', '')}  {org}  {ctx.get('user', '')}")


@context.command("current")
def current_context() -> None:
    """The current context's name."""
    click.echo(current_name())


@context.command("use")
@click.argument("name")
def use(name: str) -> None:
    """Make NAME the current context."""
    config = load_config()
    if name not in config["contexts"]:
        from deployforge_client.cli_credentials import fail

        fail(6, f"no context {name!r}: `dfctl context list`")
    config["current"] = name
    save_config(config)
    click.echo(f"Now using {name}.", err=True)


@context.command("delete")
@click.argument("name")
def delete(name: str) -> None:
    """Forget NAME (log out first to revoke its token)."""
    forget_token(name)
    config = load_config()
    config["contexts"].pop(name, None)
    if config.get("current") == name:
        config["current"] = DEFAULT
    save_config(config)
    click.echo(f"Forgot {name}.", err=True)
