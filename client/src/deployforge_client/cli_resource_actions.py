"""What a resource does besides list/view/create/update/delete: a webhook's deliveries,
redeliver, replay, test and rotate-secret; a domain's verify and certificates; a
pipeline's run. Each adds its commands to the resource's group."""

from __future__ import annotations

from typing import Any

import click

from deployforge_client.cli_credentials import api_path, client, confirm
from deployforge_client.cli_output import LIST_OUTPUTS, ONE_OUTPUTS, emit_list, emit_one, notice


def webhook_actions(group: click.Group) -> None:
    @group.command("deliveries")
    @click.argument("webhook_id")
    @click.option("--status", help="pending, retrying, succeeded, exhausted or abandoned.")
    @click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
    @click.option("-o", "--output", type=LIST_OUTPUTS, default="table")
    def deliveries(webhook_id: str, status: str | None, limit: int, output: str) -> None:
        """A webhook's deliveries, newest first, with their attempts."""
        with client() as df:
            page = df.get(api_path("/v1/webhooks/{}/deliveries", webhook_id), status=status,
                          limit=limit)  # fmt: skip
        rows = [{**d, "attempt_count": len(d.get("attempts", []))} for d in page["items"]]
        emit_list(rows, output, ["id", "event_type", "status", "attempt_count",
                                 "last_status_code", "created_at"])  # fmt: skip

    @group.command("redeliver")
    @click.argument("delivery_id")
    def redeliver(delivery_id: str) -> None:
        """Send a delivery again now, on a fresh retry schedule."""
        with client() as df:
            df.post(api_path("/v1/webhooks/deliveries/{}/redeliver", delivery_id))
        notice(f"Delivery {delivery_id} sent again.")

    @group.command("replay")
    @click.argument("webhook_id")
    @click.option("--since", required=True, help="Every matching event since (RFC 3339).")
    def replay(webhook_id: str, since: str) -> None:
        """Re-send every matching event since a time."""
        with client() as df:
            answer = df.post(api_path("/v1/webhooks/{}/replay", webhook_id), {"since": since})
        notice(f"Replay of {webhook_id} since {since} started.")
        emit_one(answer, "text")

    @group.command("test")
    @click.argument("webhook_id")
    def test(webhook_id: str) -> None:
        """Send a webhook.ping to the endpoint now."""
        with client() as df:
            df.post(api_path("/v1/webhooks/{}/test", webhook_id))
        notice(f"webhook.ping sent to {webhook_id}: see `dfctl webhooks deliveries {webhook_id}`.")

    @group.command("rotate-secret")
    @click.argument("webhook_id")
    def rotate_secret(webhook_id: str) -> None:
        """A new signing secret (printed once, on stdout); the old one signs for 24 h more."""
        with client() as df:
            rotated = df.post(api_path("/v1/webhooks/{}/rotate-secret", webhook_id), {})
        notice("The previous secret also signs for 24 hours.")
        click.echo(rotated["secret"])


def domain_actions(group: click.Group) -> None:
    @group.command("verify")
    @click.argument("domain_id")
    @click.option("-o", "--output", type=ONE_OUTPUTS, default="text")
    def verify(domain_id: str, output: str) -> None:
        """Look the TXT token and the address records up now."""
        with client() as df:
            emit_one(df.post(api_path("/v1/domains/{}/verify", domain_id)), output)

    group.add_command(certificates, "certificate")


@click.group()
def certificates() -> None:
    """A domain's certificate: view, issue now, revoke (also `dfctl domains certificate`)."""


def _certificate_commands(certificate: click.Group) -> None:
    @certificate.command("view")
    @click.argument("domain_id")
    @click.option("-o", "--output", type=ONE_OUTPUTS, default="text")
    def view(domain_id: str, output: str) -> None:
        """Issuer, serial, names, validity, renewal and the last error."""
        with client() as df:
            emit_one(df.get(api_path("/v1/domains/{}/certificate", domain_id)), output)

    @certificate.command("issue")
    @click.argument("domain_id")
    def issue(domain_id: str) -> None:
        """Order a certificate now (follow it with `view`, or the ssl.* webhooks)."""
        with client() as df:
            df.post(api_path("/v1/domains/{}/certificate", domain_id), {})
        notice(f"Certificate ordered for {domain_id}.")

    @certificate.command("revoke")
    @click.argument("domain_id")
    @click.option("--yes", is_flag=True, help="Do not ask (required off a terminal).")
    def revoke(domain_id: str, yes: bool) -> None:
        """Revoke the served certificate (the CA is told; the edge stops serving it)."""
        confirm(yes, f"Revoke the certificate of {domain_id}?")
        with client() as df:
            df.delete(api_path("/v1/domains/{}/certificate", domain_id))
        notice(f"Certificate of {domain_id} revoked.")


_certificate_commands(certificates)


def pipeline_actions(group: click.Group) -> None:
    @group.command("run")
    @click.argument("pipeline_id")
    @click.option("--env", "environment_id", required=True, help="The environment to run in.")
    @click.option("--branch", help="The branch to build (default: the service's).")
    @click.option("--param", "params", multiple=True, help="KEY=VALUE; repeat for more.")
    @click.option("--detach", is_flag=True, help="Print the deployment's id and return.")
    @click.option("--timeout", type=float, default=1800, show_default=True)
    @click.option("-o", "--output", type=click.Choice(["text", "json", "id"]), default="text")
    def run(
        pipeline_id: str,
        environment_id: str,
        branch: str | None,
        params: tuple[str, ...],
        detach: bool,
        timeout: float,
        output: str,
    ) -> None:
        """Run a pipeline: a deployment whose steps are the pipeline's; followed like
        `deploy` (exit 0 succeeded, 3 failed)."""
        from deployforge_client.cli_follow import follow
        from deployforge_client.cli_output import emit_one as show

        body: dict[str, Any] = {"environment_id": environment_id}
        if branch:
            body["branch"] = branch
        if params:
            body["parameters"] = dict(_pair(p, "--param") for p in params)
        with client() as df:
            created = df.post(api_path("/v1/pipelines/{}/run", pipeline_id), body)
            notice(f"Deployment {created['id']} created.")
            if detach:
                show(created, output)
                return
            follow(df, created["id"], output, timeout)


def _pair(text: str, flag: str) -> tuple[str, str]:
    from deployforge_client.cli_credentials import fail

    key, sep, value = text.partition("=")
    if not sep or not key:
        fail(2, f"{flag} takes KEY=VALUE, not {text!r}")
    return key, value
