"""The certificate commands: order one now, revoke the served one."""

from __future__ import annotations

from libs.aggregate import change, load_state
from libs.errors import ServiceUnavailable
from libs.messaging import CommandContext, Reply
from services.domains import certificates as cert
from services.domains import commands as c
from services.domains import decider as d
from services.domains.handlers import DOMAINS, DomainDeps, position
from services.domains.issuance import CERTIFICATES, Issuance

NOT_CONFIGURED = "certificates are not configured here: set DEPLOYFORGE_ACME_DIRECTORY_URL"


def _issuance(deps: DomainDeps) -> Issuance:
    if not isinstance(deps.issuance, Issuance):
        raise ServiceUnavailable(NOT_CONFIGURED)
    return deps.issuance


async def request_certificate(
    deps: DomainDeps, cmd: c.RequestCertificate, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    domain, _ = await load_state(deps.store, DOMAINS, cmd.domain_id)
    d.require_domain(domain, actor, "write")
    now = deps.clock()
    reason = "force" if cmd.force_renewal else "issue"
    current, _ = await load_state(deps.store, CERTIFICATES, cmd.domain_id)
    cert.decide_request(current, domain, reason=reason, now=now)  # refuses with the reason
    _issuance(deps)
    seq = await change(
        deps.store,
        CERTIFICATES,
        cmd.domain_id,
        lambda s: cert.decide_request(s, domain, reason=reason, now=now),
        lambda _: ctx.event_context(domain.organization_id),
    )
    return Reply(result=None, position=position(seq))


async def revoke_certificate(
    deps: DomainDeps, cmd: c.RevokeCertificate, ctx: CommandContext
) -> Reply:
    actor = ctx.caller()
    domain, _ = await load_state(deps.store, DOMAINS, cmd.domain_id)
    d.require_domain(domain, actor, "admin")
    state, _ = await load_state(deps.store, CERTIFICATES, cmd.domain_id)
    cert.decide_revoke(state, full_domain=domain.full_domain, reason=cmd.reason)  # refuses early
    await _issuance(deps).revoke(cmd.domain_id, c.REVOCATION_CODES[cmd.reason])
    seq = await change(
        deps.store,
        CERTIFICATES,
        cmd.domain_id,
        lambda s: cert.decide_revoke(s, full_domain=domain.full_domain, reason=cmd.reason),
        lambda _: ctx.event_context(domain.organization_id),
    )
    return Reply(result=None, position=position(seq))
