"""`dfctl auth`: log in (a named API token is kept, never the password), say who and
where, log out (the token is revoked)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from deployforge_client.cli_credentials import (
    client,
    config_path,
    credentials,
    fail,
    load_config,
    save_config,
)

if TYPE_CHECKING:
    from deployforge_client import DeployForge


@click.group()
def auth() -> None:
    """Log in, log out, and say where the credential is kept."""


@auth.command("login")
@click.option("--api-url", envvar="DEPLOYFORGE_API_URL", help="The server (default: stored).")
@click.option("--email", help="Your email (prompted on a TTY).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--with-token", is_flag=True, help="Read an API token from stdin instead.")
def login(api_url: str | None, email: str | None, password_stdin: bool, with_token: bool) -> None:
    """Keep a named API token for this machine (never the password)."""
    from deployforge_client import DeployForge

    api_url = api_url or load_config().get("api_url")
    if not api_url:
        fail(2, "give the server: --api-url (or DEPLOYFORGE_API_URL)")
    if with_token:
        token = sys.stdin.readline().strip()
        if not token:
            fail(2, "--with-token: no token on stdin")
        with DeployForge(api_url, token) as df:
            me = df.get("/v1/users/me")
        _store(api_url, token, None, me["email"])
        return
    interactive = sys.stdin.isatty()
    if email is None:
        if not interactive:
            fail(2, "--email is required when stdin is not a terminal")
        email = click.prompt("Email")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif interactive:
        password = click.prompt("Password", hide_input=True)
    else:
        fail(2, "--password-stdin (or --with-token) is required when stdin is not a terminal")
    with DeployForge(api_url, "") as anonymous:
        session = anonymous.post("/v1/auth/login", {"email": email, "password": password})
    name = f"dfctl on {os.uname().nodename}"[:100]
    with DeployForge(api_url, session["access_token"]) as df:
        created = _issue_token(df, name)
    _store(api_url, created["token"], created["id"], email)


def _issue_token(df: DeployForge, name: str) -> dict[str, Any]:
    """The widest token the user's role allows."""
    from deployforge_client.errors import APIError

    last: APIError | None = None
    for scopes in (["read", "write", "deploy", "admin"], ["read", "write", "deploy"], ["read"]):
        try:
            created: dict[str, Any] = df.post("/v1/tokens", {"name": name, "scopes": scopes})
            return created
        except APIError as exc:
            if exc.status not in (403, 422):
                raise
            last = exc
    assert last is not None
    raise last


def _store(api_url: str, token: str, token_id: str | None, email: str) -> None:
    click.echo(
        f"warning: no keyring here: the token is stored in {config_path()} (mode 0600)",
        err=True,
    )
    save_config({"api_url": api_url, "token": token, "token_id": token_id, "user": email})
    click.echo(f"Logged in to {api_url} as {email}.", err=True)


@auth.command("status")
def status() -> None:
    """Who you are, on which server, and where the credential is kept."""
    url, token, where = credentials()
    if not token:
        fail(4, "not logged in")
    with client() as df:
        me = df.get("/v1/users/me")
    click.echo(f"{me['email']} on {url}; the credential is in {where}")


@auth.command("logout")
def logout() -> None:
    """Revoke the stored token and forget it."""
    stored = load_config()
    if not stored.get("token"):
        fail(4, "not logged in")
    from deployforge_client import DeployForge
    from deployforge_client.errors import APIError

    if stored.get("token_id"):
        with DeployForge(stored.get("api_url"), stored["token"]) as df:
            try:
                df.delete(f"/v1/tokens/{stored['token_id']}")
            except APIError as exc:
                click.echo(f"warning: the token could not be revoked: {exc}", err=True)
    save_config({"api_url": stored.get("api_url")})
    click.echo("Logged out.", err=True)
