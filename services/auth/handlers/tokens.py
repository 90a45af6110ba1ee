"""API tokens: personal, service and deployment tokens, issued and revoked."""

from __future__ import annotations

from libs.aggregate import change
from libs.credentials import new_token
from libs.crypto import token_hash
from libs.errors import AuthorizationDenied
from libs.messaging import CommandContext, Reply
from libs.principal import Principal
from services.auth import decider as d
from services.auth.commands import IssueDeploymentToken, IssuedToken, IssueToken, RevokeToken
from services.auth.events import TokenIssued
from services.auth.handlers.aggregates import TOKENS, AuthDeps, position


async def issue_token(deps: AuthDeps, cmd: IssueToken, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    token_id, token, prefix = new_token(cmd.kind)
    now = deps.clock()
    events = d.decide_issue_token(
        d.TokenState(),
        actor,
        token_id=token_id,
        kind=cmd.kind,
        name=cmd.name,
        scopes=tuple(cmd.scopes),
        organization_id=cmd.organization_id,
        expires_in_days=cmd.expires_in_days,
        secret_hash=token_hash(token),
        prefix=prefix,
        now=now,
        service_id=cmd.service_id,
        deployment_id=cmd.deployment_id,
    )
    issued = events[0]
    assert isinstance(issued, TokenIssued)
    seq = await deps.store.append(
        "token",
        token_id,
        events,
        expected_version=0,
        context=ctx.event_context(issued.organization_id),
    )
    result = IssuedToken(
        id=token_id,
        name=cmd.name,
        token=token,
        kind=cmd.kind,
        prefix=prefix,
        scopes=list(issued.scopes),
        organization_id=issued.organization_id,
        expires_at=issued.expires_at.isoformat() if issued.expires_at else None,
        created_at=now.isoformat(),
    )
    return Reply(result=result, position=position(seq))


async def issue_deployment_token(
    deps: AuthDeps, cmd: IssueDeploymentToken, ctx: CommandContext
) -> Reply:
    if ctx.principal is not None:
        # Only the deploy service asks, over NATS; never a caller of the HTTP API.
        raise AuthorizationDenied("deployment tokens are issued by the deploy service")
    # Starting the deployment needed the deploy permission; the token holds no more.
    starter = Principal(
        user_id=cmd.user_id,
        organization_id=cmd.organization_id,
        memberships={cmd.organization_id: "deployer"},
        scopes=("read", "deploy"),
    )
    return await issue_token(
        deps,
        IssueToken(
            name=f"deployment {cmd.deployment_id}",
            scopes=["read", "deploy"],
            kind="deployment",
            expires_in_days=cmd.expires_in_days,
            organization_id=cmd.organization_id,
            deployment_id=cmd.deployment_id,
        ),
        CommandContext(principal=starter, request_id=ctx.request_id, traceparent=ctx.traceparent),
    )


async def revoke_token(deps: AuthDeps, cmd: RevokeToken, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    seq = await change(
        deps.store,
        TOKENS,
        cmd.token_id,
        lambda s: d.decide_revoke_token(s, actor),
        lambda s: ctx.event_context(s.organization_id),
    )
    return Reply(result=None, position=position(seq))
