"""A scan schedule through the gateway: refused when too frequent or malformed (naming
the field); in remediate mode a due slot requests one scan (two firings of the same
slot, one scan), and what it finds in the infrastructure is remediated by a job;
removed, it is gone; another organization sees none of it."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import nats

from libs.eventstore import EventStore
from services.drift.events import STREAM
from services.drift.scheduler import Scheduler
from tests.conftest import Stack
from tests.integration.drift import through_the_gateway as gateway_steps
from tests.integration.drift.through_the_gateway import environment, resource_until
from tests.moto_server import MotoServer

SSH_OPEN = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]  # fmt: skip


def _world_ssh(ec2: Any, group: str) -> bool:
    [described] = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    return any(p.get("FromPort") == 22 for p in described["IpPermissions"])


async def _scan_ended(stack: Stack, scan_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(300):
        resp = await stack.client.get(f"/v1/drift-scans/{scan_id}", headers=stack.auth())
        if resp.status == 200:
            body = await resp.json()
            if body["status"] != "running":
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"the scan never ended: {body}")


async def test_a_remediating_schedule(stack: Stack, moto: MotoServer) -> None:
    await stack.start("drift", drift_aws_endpoint_url=moto.url)
    client, auth = stack.client, stack.auth()
    env = await environment(stack)
    path = f"/v1/environments/{env}/drift-schedule"
    for body, field in (
        ({"interval_seconds": 30}, "$.interval_seconds"),
        ({"cron": "* * * * * *"}, "$.cron"),
        ({"interval_seconds": 60, "cron": "0 * * * *"}, "$.interval_seconds"),
        ({"interval_seconds": 60, "mode": "delete"}, "$.mode"),
    ):
        resp = await client.put(path, json=body, headers=auth)
        assert resp.status == 422, body
        assert (await resp.json())["error"]["details"]["field"] == field, body
    assert (await client.get(path, headers=auth)).status == 404

    declared = {
        "environment_id": env,
        "type": "security_group",
        "specs": {"description": "web", "ingress": [
            {"from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]}]},
    }  # fmt: skip
    resp = await client.post("/v1/infrastructure/resources", json=declared, headers=auth)
    resource = (await resp.json())["id"]
    group = (await resource_until(stack, resource, lambda r: r["status"] == "active"))[
        "provider_id"
    ]
    resp = await client.put(path, json={"interval_seconds": 60, "mode": "remediate"}, headers=auth)
    assert resp.status == 200, await resp.text()
    schedule = await resp.json()
    assert (schedule["mode"], schedule["interval_seconds"], schedule["last_due"]) == (
        "remediate",
        60,
        None,
    )

    ec2 = gateway_steps.ec2(moto)
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=SSH_OPEN)
    nc = await nats.connect(stack.suite.nats_url)
    try:
        store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
        store.register(STREAM)
        since = dt.datetime.fromisoformat(schedule["since"])
        later = since + dt.timedelta(seconds=61)
        scheduler = Scheduler(store, stack.suite.database_url, clock=lambda: later)
        [scan_id] = await scheduler.fire_due()
        assert await scheduler.fire_due() == []  # the same slot: no second scan
    finally:
        await nc.close()
    scanned = await _scan_ended(stack, scan_id)
    assert (scanned["scheduled"], scanned["remediate"], scanned["initiated_by"]) == (
        True,
        True,
        None,
    )
    assert scanned["critical"] == 1

    # The job re-applies the spec: SSH is closed again, by DeployForge.
    for _ in range(300):
        if not _world_ssh(ec2, group):
            break
        await asyncio.sleep(0.1)
    assert not _world_ssh(ec2, group)
    [finding] = scanned["findings"]
    resp = await client.get(f"/v1/drift-findings/{finding['id']}", headers=auth)
    remediated = await resp.json()
    assert (remediated["last_action"], remediated["last_action_by"]) == ("remediate", "system")
    fired = await (await client.get(path, headers=auth)).json()
    assert fired["last_scan_id"] == scan_id

    rival = await stack.outsider()
    assert (await client.get(path, headers=rival)).status == 404
    assert (await client.put(path, json={"interval_seconds": 60}, headers=rival)).status == 404
    assert (await client.delete(path, headers=rival)).status == 404
    assert (await client.delete(path, headers=auth)).status == 204
    assert (await client.get(path, headers=auth)).status == 404
