"""One function per domains command: load the aggregates, decide, append.

A service and an environment named by a domain are checked from the deploy
context's own events (their aggregates), not from a read model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec
import yarl

from libs.aggregate import AggregateType, change, load_state
from libs.errors import ValidationFailed
from libs.eventstore import EventStore
from libs.ids import new_id, random_secret
from libs.messaging import CommandContext, Reply
from services.deploy.handlers.aggregates import ENVIRONMENTS, SERVICES
from services.domains import commands as c
from services.domains import decider as d
from services.domains import names
from services.domains.decider import Lookup
from services.domains.events import CODECS, STREAM, DomainAdded

DOMAINS = AggregateType("domain", CODECS["domain"], d.DomainState(), d.evolve_domain)
NAMES = AggregateType("domain_name", CODECS["domain_name"], d.NameState(), d.evolve_name)


class DomainDeps:
    """The adapters the domains handlers need; main.py builds the real ones."""

    def __init__(
        self,
        store: EventStore,
        look: Callable[[str], Awaitable[Lookup]],
        clock: Callable[[], datetime],
        issuance: object | None = None,
    ) -> None:
        self.store = store
        # What DNS says about a full domain name (dns_lookup.DnsLookup.look).
        self.look = look
        self.clock = clock
        # The ACME process (issuance.Issuance), None when no CA is configured.
        self.issuance = issuance


def position(seq: int | None) -> str | None:
    return f"{STREAM.context}:{seq}" if seq else None


def _redirect(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parsed = yarl.URL(url)
    except ValueError:
        raise ValidationFailed("redirect_to is an http(s) URL", "$.redirect_to") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValidationFailed("redirect_to is an http(s) URL", "$.redirect_to")
    return url


async def _owners(
    deps: DomainDeps, service_id: str | None, environment_id: str | None
) -> tuple[str | None, str | None]:
    """The organizations owning a live service and environment (None: none such)."""
    service_org = environment_org = None
    if service_id is not None:
        service, _ = await load_state(deps.store, SERVICES, service_id)
        service_org = service.organization_id if service.exists else None
    if environment_id is not None:
        environment, _ = await load_state(deps.store, ENVIRONMENTS, environment_id)
        environment_org = environment.organization_id if environment.exists else None
    return service_org, environment_org


async def add_domain(deps: DomainDeps, cmd: c.AddDomain, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    org = cmd.organization_id or actor.organization_id
    if org is None:
        raise ValidationFailed("name the organization", "$.organization_id")
    full = names.normalize(cmd.domain, cmd.subdomain, cmd.challenge)
    domain_id = new_id("dom")
    added = DomainAdded(
        domain_id=domain_id,
        organization_id=org,
        full_domain=full,
        domain=cmd.domain,
        subdomain=cmd.subdomain,
        service_id=cmd.service_id,
        environment_id=cmd.environment_id,
        port=cmd.port,
        ssl_enabled=cmd.ssl_enabled,
        auto_renew_ssl=cmd.auto_renew_ssl,
        redirect_to=_redirect(cmd.redirect_to),
        redirect_https=cmd.redirect_https,
        challenge=cmd.challenge,
        verification_token=random_secret(32),
    )
    service_org, environment_org = await _owners(deps, cmd.service_id, cmd.environment_id)
    # Refused before the name is claimed, so a refusal leaves nothing behind.
    d.decide_add(
        d.DomainState(),
        actor,
        added,
        service_organization=service_org,
        environment_organization=environment_org,
    )
    key = names.claim_key(full)
    holder, _ = await load_state(deps.store, NAMES, key)
    became = "live"
    if holder.domain_id is not None and holder.domain_id != domain_id:
        held, held_version = await load_state(deps.store, DOMAINS, holder.domain_id)
        became = "missing" if held_version == 0 else "removed" if held.removed else "live"
    now = deps.clock()
    await change(
        deps.store,
        NAMES,
        key,
        lambda s: d.decide_claim(
            s,
            domain_id=domain_id,
            full_domain=full,
            now=now,
            # Only the holder looked at: another that took over meanwhile is live.
            holder=became if s.domain_id == holder.domain_id else "live",
        ),
        lambda _: ctx.event_context(org),
    )
    seq = await deps.store.append(
        "domain", domain_id, [added], expected_version=0, context=ctx.event_context(org)
    )
    return Reply(result=c.Created(id=domain_id), position=position(seq))


async def update_domain(deps: DomainDeps, cmd: c.UpdateDomain, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    changes = {
        f: getattr(cmd, f)
        for f in cmd.__struct_fields__
        if f not in ("domain_id", "redirect_to") and getattr(cmd, f) is not None
    }
    if cmd.redirect_to is not msgspec.UNSET:
        changes["redirect_to"] = cmd.redirect_to
    if changes.get("redirect_to") is not None:
        changes["redirect_to"] = _redirect(changes["redirect_to"])
    service_org, environment_org = await _owners(
        deps, changes.get("service_id"), changes.get("environment_id")
    )
    seq = await change(
        deps.store,
        DOMAINS,
        cmd.domain_id,
        lambda s: d.decide_update(
            s,
            actor,
            changes,
            service_organization=service_org,
            environment_organization=environment_org,
        ),
        lambda s: ctx.event_context(s.organization_id),
    )
    return Reply(result=None, position=position(seq))


async def remove_domain(deps: DomainDeps, cmd: c.RemoveDomain, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    state, _ = await load_state(deps.store, DOMAINS, cmd.domain_id)
    if state.removed:  # a removal cut short before its name was released: finish it
        await _release(deps, ctx, state)
    seq = await change(
        deps.store,
        DOMAINS,
        cmd.domain_id,
        lambda s: d.decide_remove(s, actor),
        lambda s: ctx.event_context(s.organization_id),
    )
    await _release(deps, ctx, state)
    return Reply(result=None, position=position(seq))


async def _release(deps: DomainDeps, ctx: CommandContext, state: d.DomainState) -> None:
    """The name is free again once its domain is removed."""
    domain_id = state.domain_id or ""
    await change(
        deps.store,
        NAMES,
        names.claim_key(state.full_domain),
        lambda s: d.decide_release(s, domain_id=domain_id),
        lambda _: ctx.event_context(state.organization_id),
    )


async def verify_domain(deps: DomainDeps, cmd: c.VerifyDomain, ctx: CommandContext) -> Reply:
    actor = ctx.caller()
    state, _ = await load_state(deps.store, DOMAINS, cmd.domain_id)
    d.require_domain(state, actor, "write")
    lookup = await deps.look(state.full_domain)
    seq = await change(
        deps.store,
        DOMAINS,
        cmd.domain_id,
        lambda s: d.decide_verify(s, actor, lookup),
        lambda s: ctx.event_context(s.organization_id),
    )
    return Reply(result=None, position=position(seq))
