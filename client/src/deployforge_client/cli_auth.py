"""`dfctl auth`: log in (a named API token is kept, never the password), say who and
where, log out (the token is revoked)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from deployforge_client.cli_contexts import current, current_name, forget_token, store
from deployforge_client.cli_credentials import client, credentials, fail

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
@click.option("--org", "organization_id", help="Work in this organization (default: yours).")
@click.option("--context", "context_name", help="Keep it as this context (default: current).")
def login(
    api_url: str | None,
    email: str | None,
    password_stdin: bool,
    with_token: bool,
    organization_id: str | None,
    context_name: str | None,
) -> None:
    """Keep a named API token for this machine (never the password), as a context: a
    server and an organization. It becomes the current context."""
    from deployforge_client import DeployForge

    name = context_name or current_name()
    _, existing = current()
    api_url = api_url or existing.get("api_url")
    if not api_url:
        fail(2, "give the server: --api-url (or DEPLOYFORGE_API_URL)")
    if with_token:
        token = sys.stdin.readline().strip()
        if not token:
            fail(2, "--with-token: no token on stdin")
        with DeployForge(api_url, token) as df:
            me = df.get("/v1/users/me")
        _store(name, api_url, token, None, me["email"], organization_id)
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
    label = f"dfctl on {os.uname().nodename}"[:100]
    with DeployForge(api_url, session["access_token"]) as df:
        created = _issue_token(df, label, organization_id)
    _store(name, api_url, created["token"], created["id"], email, organization_id)


def _issue_token(df: DeployForge, name: str, organization_id: str | None) -> dict[str, Any]:
    """The widest token the user's role allows (in that organization, when given)."""
    from deployforge_client.errors import APIError

    last: APIError | None = None
    for scopes in (["read", "write", "deploy", "admin"], ["read", "write", "deploy"], ["read"]):
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        if organization_id:
            body["organization_id"] = organization_id
        try:
            created: dict[str, Any] = df.post("/v1/tokens", body)
            return created
        except APIError as exc:
            if exc.status not in (403, 422):
                raise
            last = exc
    assert last is not None
    raise last


def _store(
    name: str,
    api_url: str,
    token: str,
    token_id: str | None,
    email: str,
    organization_id: str | None,
) -> None:
    context = {"api_url": api_url, "token_id": token_id, "user": email,
               "organization_id": organization_id}  # fmt: skip
    where = store(name, context, token)
    click.echo(f"Logged in to {api_url} as {email} (context {name}; the token is in {where}).",
               err=True)  # fmt: skip


@auth.command("status")
def status() -> None:
    """Who you are, on which server, and where the credential is kept."""
    url, token, where = credentials()
    if not token:
        fail(4, "not logged in")
    with client() as df:
        me = df.get("/v1/users/me")
    name, context = current()
    org = context.get("organization_id") or me.get("default_organization_id")
    click.echo(f"{me['email']} on {url}, organization {org} (context {name});"
               f" the credential is in {where}")  # fmt: skip


@auth.command("logout")
def logout() -> None:
    """Revoke the current context's token and forget it."""
    from deployforge_client import DeployForge
    from deployforge_client.cli_contexts import token_of
    from deployforge_client.errors import APIError

    name, context = current()
    token, _ = token_of(name, context)
    if not token:
        fail(4, "not logged in")
    if context.get("token_id"):
        with DeployForge(context.get("api_url"), token) as df:
            try:
                df.delete(f"/v1/tokens/{context['token_id']}")
            except APIError as exc:
                click.echo(f"warning: the token could not be revoked: {exc}", err=True)
    forget_token(name)
    click.echo("Logged out.", err=True)
