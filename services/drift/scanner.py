"""Drift scans: an environment's declared infrastructure against what the provider has,
and its deployed services against what the agents run.

A durable consumer of the drift stream (`drift_scans`) takes each
`drift.scan_requested` and carries the scan out:

0. skipped (`drift.scan_skipped`, with the reason) while a deployment of the
   environment runs: what it changes is not drift. Otherwise the services'
   side is read (services/drift/app_observer.py): an agent that does not
   answer makes its services unread, named in `could_not_read`;
1. the environment's declared resources, each from its own events (those
   being provisioned, changed or deleted right now are skipped and named in
   `could_not_read`: a job in flight is not drift);
2. the provider read in every region they are in (the environment's region
   when none is declared), with the environment's credentials. A provider
   that cannot be read fails the scan as a whole (`drift.scan_failed`):
   nothing is reported in sync and nothing resolved on a failed read;
3. the findings (services/drift/compare.py and apps.py, less what the ignore
   rules silence), each recorded on its own
   aggregate: new, reopened or changed (`drift.detected`), or nothing when it
   is the same drift seen again;
4. the environment's open findings not found again are resolved
   (`drift.resolved`), except those of resources and services unread;
5. `drift.scan_completed` with the counts and the findings seen;
6. for a remediate-mode schedule's scan, the open infrastructure findings
   remediated (rate-limited; services/drift/schedules.py).

The message is acknowledged only then; a scan delivered again after a crash
records nothing twice (each step is decided against its aggregate's state).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import asyncpg
import msgspec
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.aggregate import change, change_state, load_state
from libs.consumers import DurableConsumer, in_progress
from libs.crypto import SecretBox
from libs.errors import Conflict
from libs.events import Event, EventContext, meta_from_headers
from libs.eventstore import EventStore
from libs.principal import SYSTEM
from services.deploy.handlers.aggregates import ENVIRONMENTS
from services.drift import resources as r
from services.drift import scans as s
from services.drift import schedules as sc
from services.drift import specs
from services.drift import triage as t
from services.drift.app_observer import AppObserver, AppReading, deploying
from services.drift.apps import compare_apps
from services.drift.aws import Observed
from services.drift.aws_provision import desired_attributes
from services.drift.compare import Declared, compare
from services.drift.edge_observer import NOTHING_ROUTED, EdgeObserver
from services.drift.edges import compare_edges
from services.drift.events import STREAM, DriftDetected, ScanCompleted, ScanFailed, ScanSkipped
from services.drift.findings import ACKNOWLEDGED, OPEN, Finding
from services.drift.handlers import FINDINGS, RESOURCES, SCANS, carry_out
from services.drift.jobs import ProviderUnavailable, open_provider
from services.drift.rule_store import rules_of
from services.drift.triage import INFRASTRUCTURE

log = structlog.get_logger("drift.scans")

NOTHING_RUNS = AppReading(desired=[], observations=[], unread_services=[], unanswered_agents=[])

DURABLE = "drift_scans"
_READ_FAILURES = (ProviderUnavailable, ClientError, BotoCoreError, OSError, ValueError)


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    finding_id: str
    state: s.FindingState
    change: str  # new | reopened | changed | seen


class Scanner:
    def __init__(
        self,
        store: EventStore,
        database_url: str,
        box: SecretBox | None,
        *,
        apps: AppObserver | None = None,
        edges: EdgeObserver | None = None,
        endpoint_url: str | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.database_url = database_url
        self.box = box
        self.apps = apps
        self.edges = edges
        self.endpoint_url = endpoint_url
        self.clock = clock

    def consumer(self) -> DurableConsumer:
        return DurableConsumer(
            self.store.js,
            self.store.stream_name(STREAM.context),
            ConsumerConfig(
                durable_name=DURABLE,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                max_ack_pending=64,
            ),
            batch=8,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer().run(self._handle, stop)

    async def _handle(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            meta = meta_from_headers(msg.subject, msg.headers or {}, self.store.namespace)
            if meta.event_type == "drift.scan_requested":
                async with in_progress(msg, every=15):
                    await self.scan(meta.aggregate_id)
            await msg.ack()

    async def scan(self, scan_id: str) -> None:
        scan, _ = await load_state(self.store, SCANS, scan_id)
        if scan.status != s.REQUESTED or scan.environment_id is None:
            return
        environment_id = scan.environment_id
        context = EventContext(actor="system:drift", organization_id=scan.organization_id)
        conn = await asyncpg.connect(self.database_url)
        try:
            busy = await deploying(conn, environment_id)
            if busy is not None:
                reason = f"deployment {busy} is changing the environment: scan again after it"
                await self._outcome(scan_id, ScanSkipped(reason=reason), context)
                return
            rules = await rules_of(conn, environment_id)
            apps = await self.apps.read(conn, environment_id) if self.apps else NOTHING_RUNS
            edge = await self.edges.read(conn, environment_id) if self.edges else NOTHING_ROUTED
        finally:
            await conn.close()
        declared, skipped, regions = await self._declared(environment_id)
        try:
            observed = await self._observe(environment_id, regions)
        except _READ_FAILURES as exc:
            reason = f"the provider could not be read: {_reason(exc)}"
            log.info("drift_scan_failed", scan_id=scan_id, reason=reason)
            await self._outcome(scan_id, ScanFailed(reason=reason), context)
            return
        now = self.clock()
        found = compare(declared, observed, environment_id=environment_id, rules=rules, now=now)
        app_scan = compare_apps(
            environment_id,
            apps.desired,
            apps.observations,
            unread_services=apps.unread_services,
            rules=rules,
            now=now,
        )
        found += app_scan.found
        skipped |= set(app_scan.could_not_read)
        edge_scan = compare_edges(edge.desired, edge.observations, now=now, rules=rules)
        found += edge_scan.found
        skipped |= set(edge_scan.could_not_read)
        counts = {"new": 0, "reopened": 0, "changed": 0}
        open_now: dict[str, str] = {}  # finding id -> severity, of drift standing now
        for one in found:
            recorded = await self._record(scan, one.finding, one.resource_id, context, now)
            if recorded.change in counts:
                counts[recorded.change] += 1
            if recorded.state.state in (OPEN, ACKNOWLEDGED):
                open_now[recorded.finding_id] = one.finding.severity
        seen = [s.finding_id(environment_id, one.finding.fingerprint) for one in found]
        resolved, standing = await self._resolve(
            environment_id, set(seen), skipped, scan_id, context
        )
        open_now |= standing
        critical = sum(1 for severity in open_now.values() if severity == "critical")
        completed = ScanCompleted(
            drifts_detected=len(open_now),
            critical=critical,
            resolved=resolved,
            seen=seen,
            could_not_read=sorted(skipped),
            resources=len(declared),
            services=app_scan.compared,
            **counts,
        )
        await self._outcome(scan_id, completed, context)
        log.info("drift_scan_completed", scan_id=scan_id, open=len(open_now), critical=critical)
        if scan.remediate:
            await self._remediate(list(open_now), now)

    async def _remediate(self, finding_ids: list[str], now: dt.datetime) -> None:
        """A remediate-mode schedule's scan: the open findings of infrastructure remediated,
        each at most once an hour, at most ten a scan (services/drift/schedules.py)."""
        done = 0
        for finding_id in sorted(finding_ids):
            if done >= sc.REMEDIATE_AT_MOST:
                break
            finding, _ = await load_state(self.store, FINDINGS, finding_id)
            recent = finding.remediated_at and now - finding.remediated_at < sc.REMEDIATE_EVERY
            if finding.state != OPEN or finding.resource_type not in INFRASTRUCTURE or recent:
                continue

            def decide(state: s.FindingState, resource: r.ResourceState | None) -> t.Decided:
                return t.decide_remediate(state, SYSTEM, resource, now=now)

            try:
                await carry_out(self.store, finding_id, decide, _system_context)
            except Conflict as exc:  # unexpected, or its resource busy: left for a person
                log.info("drift_remediation_skipped", finding_id=finding_id, reason=exc.message)
                continue
            done += 1
            log.info("drift_remediation_requested", finding_id=finding_id)

    async def _record(
        self, scan: s.ScanState, finding: Finding, resource_id: str | None,
        context: EventContext, now: dt.datetime,
    ) -> Recorded:  # fmt: skip
        """The finding on its aggregate: new, reopened, changed, or the same seen again."""
        assert scan.scan_id
        assert scan.environment_id
        finding_id = s.finding_id(scan.environment_id, finding.fingerprint)
        decided: list[Event] = []

        def decide(state: s.FindingState) -> list[Event]:
            decided[:] = s.decide_seen(
                state,
                finding,
                organization_id=scan.organization_id or "",
                environment_id=scan.environment_id or "",
                scan_id=scan.scan_id or "",
                resource_id=resource_id,
                now=now,
            )
            return decided

        state, _ = await change_state(self.store, FINDINGS, finding_id, decide, lambda _: context)
        detected = [e for e in decided if isinstance(e, DriftDetected)]
        change = detected[0].change if detected else "seen"
        return Recorded(finding_id=finding_id, state=state, change=change)

    async def _declared(self, environment_id: str) -> tuple[list[Declared], set[str], set[str]]:
        """The environment's resources to compare, those skipped, and their regions."""
        conn = await asyncpg.connect(self.database_url)
        try:
            ids = [
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM drift.resources WHERE environment_id = $1", environment_id
                )
            ]
        finally:
            await conn.close()
        declared: list[Declared] = []
        skipped: set[str] = set()
        regions: set[str] = set()
        for resource_id in ids:
            state, _ = await load_state(self.store, RESOURCES, resource_id)
            if state.status in (r.DELETED,):
                continue
            regions.add(state.region)
            if state.status in r.BUSY or state.provider_id is None:
                skipped.add(f"aws/{state.type}/{resource_id}")
                continue
            spec = specs.check(state.type, state.specs)
            declared.append(
                Declared(
                    resource_id=resource_id,
                    resource_type=state.type,
                    desired=desired_attributes(await self._resolved(spec), state.tags),
                )
            )
        return declared, skipped, regions

    async def _resolved(self, spec: specs.Spec) -> specs.Spec:
        """A server's security groups named by DeployForge id, as the provider's ids."""
        if not isinstance(spec, specs.ServerSpec):
            return spec
        ids = []
        for ref in spec.security_group_ids:
            group, _ = (
                await load_state(self.store, RESOURCES, ref)
                if ref.startswith("res_")
                else (None, 0)
            )
            ids.append(group.provider_id if group is not None and group.provider_id else ref)
        fields = {f: getattr(spec, f) for f in spec.__struct_fields__}
        return specs.ServerSpec(**{**fields, "security_group_ids": ids})

    async def _observe(self, environment_id: str, regions: set[str]) -> list[Observed]:
        """What the provider has, in every region resources are declared in (or the
        environment's, to find what is tagged as ours there); nothing to read when
        nothing is declared and the environment has no credentials."""
        if not regions:
            environment, _ = await load_state(self.store, ENVIRONMENTS, environment_id)
            if environment.credentials_sealed is None:
                return []
            if environment.region:
                regions = {environment.region}
        observed: list[Observed] = []
        for region in sorted(regions):
            provider = await open_provider(
                self.store, self.box, environment_id, region, self.endpoint_url
            )
            observed += await provider.read()
        return observed

    async def _resolve(
        self, environment_id: str, seen: set[str], skipped: set[str], scan_id: str,
        context: EventContext,
    ) -> tuple[int, dict[str, str]]:  # fmt: skip
        """Resolve the open findings not seen again; those of skipped resources stand."""
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT id, address, severity, state FROM drift.findings"
                " WHERE environment_id = $1 AND state <> 'resolved'",
                environment_id,
            )
        finally:
            await conn.close()
        resolved, standing = 0, {}
        for row in rows:
            if row["id"] in seen:
                continue
            if any(row["address"] == p or row["address"].startswith(p + "/") for p in skipped):
                if row["state"] in (OPEN, ACKNOWLEDGED):
                    standing[row["id"]] = row["severity"]
                continue
            _, seq = await change_state(
                self.store,
                FINDINGS,
                row["id"],
                lambda st: s.decide_resolved(st, scan_id=scan_id),
                lambda _: context,
            )
            resolved += 1 if seq is not None else 0
        return resolved, standing

    async def _outcome(
        self, scan_id: str, outcome: ScanCompleted | ScanFailed | ScanSkipped,
        context: EventContext,
    ) -> None:  # fmt: skip
        await change(
            self.store, SCANS, scan_id, lambda st: s.decide_outcome(st, outcome), lambda _: context
        )


def _system_context(organization_id: str | None) -> EventContext:
    return EventContext(actor="system:drift", organization_id=organization_id)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return str(exc) or type(exc).__name__
