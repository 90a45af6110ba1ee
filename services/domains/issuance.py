"""Certificates ordered, renewed and retried: the domains context's ACME process.

A durable consumer of the domains stream (`domains_certificates`):

- a domain verified (or with TLS turned back on) gets a certificate requested;
- an `ssl.requested` is carried out: a key is made and sealed in the key store,
  CAA is checked, an order is opened and its URL recorded (`ssl.order_placed`)
  before anything else happens, the challenges are answered (HTTP-01 through the
  edge, DNS-01 through a DNS provider), the order is finalized, the certificate
  is put in the edge bucket (the edges swap it in) and `ssl.issued` or
  `ssl.renewed` recorded. Any failure is an `ssl.failed` with the time of the
  next attempt. The message is acknowledged only then: after a crash (SIGKILL
  anywhere) it is delivered again, and the recorded order is resumed.

A schedule (every `check_seconds`) requests renewals that are due, retries
whose wait is over, certificates for verified domains that have none, and
announces `ssl.expiring` thresholds. Its decisions are the aggregate's, so
replicas running it at once change nothing twice.

The `acme` library is synchronous: each ACME call runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import dns.exception
import nats.js.errors
import requests
import structlog
from acme import errors as acme_errors
from acme import messages
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from libs.aggregate import AggregateType, change, load_state
from libs.consumers import DurableConsumer, in_progress
from libs.crypto import SecretBox
from libs.errors import DomainError
from libs.events import EventContext, meta_from_headers
from libs.eventstore import EventStore
from services.domains import certificates as c
from services.domains.acme_client import (
    AcmeClient,
    AcmeConfig,
    OrderInvalid,
    describe,
    new_key_pem,
)
from services.domains.dns_lookup import DnsLookup
from services.domains.events import CODECS, STREAM
from services.domains.handlers import DOMAINS
from services.domains.key_store import KeyStore
from services.domains.responders import Responder
from services.domains.rfc2136 import DnsUpdateFailed
from services.edge import table

log = structlog.get_logger("domains.acme")

CERTIFICATES = AggregateType(
    "certificate", CODECS["certificate"], c.CertificateState(), c.evolve_certificate
)
DURABLE = "domains_certificates"
# What an ACME conversation can fail with, short of a bug of ours.
_ACME_FAILURES = (
    OrderInvalid,
    DnsUpdateFailed,
    dns.exception.DNSException,
    TimeoutError,
    acme_errors.Error,
    messages.Error,
    requests.RequestException,
    ValueError,
)


@dataclass(frozen=True)
class IssuanceConfig:
    acme: AcmeConfig
    # The CA's CAA identities ("letsencrypt.org"): a CAA record naming none refuses.
    caa_identities: frozenset[str]
    check_seconds: float = 60.0
    expiring_days: tuple[int, ...] = (14, 7, 1)
    retry_initial: dt.timedelta = dt.timedelta(hours=1)
    retry_most: dt.timedelta = dt.timedelta(hours=32)
    order_timeout: dt.timedelta = dt.timedelta(minutes=5)
    # How long a request taken by a replica that died waits before another takes it.
    ack_wait_seconds: float = 60.0


class Issuance:
    def __init__(
        self,
        store: EventStore,
        database_url: str,
        edge: KeyValue,
        keys: KeyStore,
        box: SecretBox,
        responders: Mapping[str, Responder],
        lookup: DnsLookup,
        config: IssuanceConfig,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.store = store
        self.database_url = database_url
        self.edge = edge
        self.keys = keys
        self.box = box
        self.responders = responders
        self.lookup = lookup
        self.config = config
        self.clock = clock
        self._client: AcmeClient | None = None
        self._client_lock = asyncio.Lock()

    # --- the consumer --------------------------------------------------------------------

    def consumer(self) -> DurableConsumer:
        return DurableConsumer(
            self.store.js,
            self.store.stream_name(STREAM.context),
            ConsumerConfig(
                durable_name=DURABLE,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.config.ack_wait_seconds,
                max_ack_pending=256,
            ),
            batch=16,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.consumer().run(self._handle, stop), self._schedule(stop))

    async def _handle(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
            if meta.event_type == "domain.verified" or meta.event_type == "domain.updated":
                await self.request(meta.aggregate_id, "issue")
            elif meta.event_type == "domain.removed":
                # Its route goes (the edge publisher), and so does its certificate.
                with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                    await self.edge.delete(table.certificate_key(meta.aggregate_id))
                await self.keys.drop_pending(meta.aggregate_id)
            elif meta.event_type == "ssl.requested":
                async with in_progress(msg, every=self.config.ack_wait_seconds / 4):
                    await self.carry_out(meta.aggregate_id)
            await msg.ack()

    async def request(self, domain_id: str, reason: str) -> int | None:
        """Ask for a certificate if the rules allow one now (None: nothing to do)."""
        domain, _ = await load_state(self.store, DOMAINS, domain_id)
        now = self.clock()
        try:
            return await change(
                self.store,
                CERTIFICATES,
                domain_id,
                lambda s: c.decide_request(s, domain, reason=reason, now=now),
                lambda _: _context(domain.organization_id),
            )
        except DomainError as exc:  # not verified, TLS off, removed: nothing to order
            log.debug("certificate_not_requested", domain_id=domain_id, why=exc.message)
            return None

    # --- carrying a request out ----------------------------------------------------------

    async def carry_out(self, domain_id: str) -> None:
        state, _ = await load_state(self.store, CERTIFICATES, domain_id)
        if state.status != c.PENDING:
            return  # done already (a redelivery after the outcome was recorded)
        domain, _ = await load_state(self.store, DOMAINS, domain_id)
        context = _context(domain.organization_id)
        if not domain.exists:
            await self._failed(domain_id, domain.full_domain, "the domain was removed", context)
            return
        try:
            await self._issue(domain_id, domain.full_domain, state, context)
        except _ACME_FAILURES as exc:
            message = str(exc) or type(exc).__name__
            log.info("certificate_failed", domain_id=domain_id, error=message)
            await self.keys.drop_pending(domain_id)
            await self._failed(domain_id, domain.full_domain, message, context)

    async def _issue(
        self,
        domain_id: str,
        full_domain: str,
        state: c.CertificateState,
        context: EventContext,
    ) -> None:
        responder = self.responders.get(state.challenge)
        if responder is None:
            raise OrderInvalid(
                f"{state.challenge} is not configured here"
                + (" (set DEPLOYFORGE_ACME_RFC2136_SERVER)" if state.challenge == "dns-01" else "")
            )
        acme = await self.client()
        key = await self.keys.pending(domain_id)
        order_url = state.order_url
        if order_url is None or key is None:
            refusal = await self.lookup.caa_refusal(full_domain, set(self.config.caa_identities))
            if refusal is not None:
                raise OrderInvalid(refusal)
            key = new_key_pem()
            await self.keys.keep_pending(domain_id, key)
            order_url = await asyncio.to_thread(acme.open_order, key, state.names)
            # Recorded before anything else: a crash from here on resumes this order.
            await change(
                self.store,
                CERTIFICATES,
                domain_id,
                lambda s: c.decide_order_placed(s, order_url),
                lambda _: context,
            )
            log.info("certificate_order_placed", domain_id=domain_id, order_url=order_url)
        else:
            log.info("certificate_order_resumed", domain_id=domain_id, order_url=order_url)
        loop = asyncio.get_running_loop()

        def on_loop(coro: Coroutine[Any, Any, None]) -> None:
            asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

        deadline = dt.datetime.now() + self.config.order_timeout  # the acme library's clock
        fullchain = await asyncio.to_thread(
            acme.complete,
            order_url,
            key,
            state.names,
            state.challenge,
            lambda i, ch, v: on_loop(responder.present(i, ch, v)),
            lambda i, ch, v: on_loop(responder.withdraw(i, ch, v)),
            deadline,
        )
        issued = describe(fullchain)
        suggested = await asyncio.to_thread(acme.renewal_time, fullchain)
        due = c.renewal_due(issued, suggested)
        served = table.ServedCertificate(
            domain_id=domain_id,
            names=issued.names,
            fullchain_pem=fullchain,
            sealed_key=self.box.seal(key, purpose=table.KEY_PURPOSE),
            serial=issued.serial,
            not_after=issued.not_after,
        )
        await self.edge.put(table.certificate_key(domain_id), table.encode(served))
        await change(
            self.store,
            CERTIFICATES,
            domain_id,
            lambda s: c.decide_issued(
                s, issued, full_domain=full_domain, renewal_due_at=due, order_url=order_url
            ),
            lambda _: context,
        )
        await self.keys.drop_pending(domain_id)
        log.info(
            "certificate_issued",
            domain_id=domain_id,
            serial=issued.serial,
            not_after=issued.not_after.isoformat(),
            renewal_due_at=due.isoformat(),
        )

    async def _failed(
        self, domain_id: str, full_domain: str, error: str, context: EventContext
    ) -> None:
        now = self.clock()
        await change(
            self.store,
            CERTIFICATES,
            domain_id,
            lambda s: c.decide_failed(
                s,
                error,
                full_domain=full_domain,
                now=now,
                initial=self.config.retry_initial,
                most=self.config.retry_most,
            ),
            lambda _: context,
        )

    async def client(self) -> AcmeClient:
        """The installation's account on the configured CA (registered on first use)."""
        async with self._client_lock:
            if self._client is None:
                self._client = await self._account()
            return self._client

    async def _account(self) -> AcmeClient:
        config = self.config.acme
        kept = await self.keys.account(config.directory_url)
        if kept is not None:
            key, uri = kept
            return await asyncio.to_thread(AcmeClient, config, key, uri)
        key = new_key_pem()
        acme = await asyncio.to_thread(AcmeClient, config, key)
        uri = await asyncio.to_thread(acme.register)
        if not await self.keys.keep_account(config.directory_url, key, uri):
            return await self._account()  # another replica registered first: use its
        log.info("acme_account_registered", directory=config.directory_url, account=uri)
        return acme

    async def revoke(self, domain_id: str, reason_code: int) -> None:
        """Tell the CA the served certificate is revoked (the caller records it)."""
        try:
            entry = await self.edge.get(table.certificate_key(domain_id))
        except Exception:
            return
        if not entry.value:
            return
        served = table.CERTIFICATE.decode(entry.value)
        acme = await self.client()
        await asyncio.to_thread(acme.revoke, served.fullchain_pem, reason_code)
        await self.edge.delete(table.certificate_key(domain_id))

    # --- the schedule --------------------------------------------------------------------

    async def _schedule(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_due()
            except (OSError, asyncpg.PostgresError, DomainError) as exc:
                log.info("certificate_check_retrying", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.check_seconds)

    async def check_due(self) -> None:
        """Request what is due and announce what is expiring."""
        horizon = self.clock() + dt.timedelta(days=max(self.config.expiring_days, default=0))
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT d.id, c.status FROM domains.domains d"
                " LEFT JOIN domains.certificates c ON c.domain_id = d.id"
                " WHERE d.removed_at IS NULL AND d.verification_status = 'verified'"
                " AND d.ssl_enabled AND (c.domain_id IS NULL"
                " OR c.status = 'failed' AND c.retry_at <= $1"
                " OR c.status = 'issued' AND (c.retry_at <= $1 OR c.renewal_due_at <= $1"
                "   OR c.not_after <= $2))",
                self.clock(),
                horizon,
            )
        finally:
            await conn.close()
        for row in rows:
            domain_id, status = row["id"], row["status"]
            if status is None:
                await self.request(domain_id, "issue")
            elif status == c.FAILED:
                await self.request(domain_id, "retry")
            else:
                await self._renew_or_announce(domain_id)

    async def _renew_or_announce(self, domain_id: str) -> None:
        domain, _ = await load_state(self.store, DOMAINS, domain_id)
        if domain.auto_renew_ssl:
            await self.request(domain_id, "renew")
        now = self.clock()
        await change(
            self.store,
            CERTIFICATES,
            domain_id,
            lambda s: c.decide_expiring(
                s,
                full_domain=domain.full_domain,
                now=now,
                thresholds=list(self.config.expiring_days),
            ),
            lambda _: _context(domain.organization_id),
        )


def _context(organization_id: str | None) -> EventContext:
    return EventContext(actor="system:acme", organization_id=organization_id)
