"""Drift scans of declared infrastructure against moto's server: SSH opened out of band is
a critical finding with its JSON-pointer difference; revoked, it is resolved; opened
again, reopened. Look-alikes without our tag are never reported; a tagged resource
nobody declares is unexpected; a provider that cannot be read fails the scan and
resolves nothing; another organization sees none of it."""

from __future__ import annotations

import asyncio

from tests.conftest import Stack
from tests.integration.drift import through_the_gateway as gateway_steps
from tests.integration.drift.through_the_gateway import environment, scan
from tests.moto_server import MotoServer
from tests.receivers import Receivers, verify

SSH_OPEN = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]  # fmt: skip


async def test_drift_is_found_resolved_and_reopened_with_its_difference(
    stack: Stack, moto: MotoServer, receivers: Receivers
) -> None:
    await stack.start("drift", drift_aws_endpoint_url=moto.url)
    await stack.start_webhooks()
    receiver = await receivers()
    hook = await stack.client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["drift.*"]}, headers=stack.auth()
    )
    secret = (await hook.json())["secret"]
    env = await environment(stack)
    declared = {
        "environment_id": env,
        "type": "security_group",
        "specs": {"description": "web", "ingress": [
            {"from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]},
            {"from_port": 22, "to_port": 22, "cidrs": ["203.0.113.0/24"]},
        ]},
        "tags": {"team": "web", "tier": "edge"},
    }  # fmt: skip
    resp = await stack.client.post(
        "/v1/infrastructure/resources", json=declared, headers=stack.auth()
    )
    resource = (await resp.json())["id"]
    for _ in range(300):
        state = await (
            await stack.client.get(f"/v1/infrastructure/resources/{resource}", headers=stack.auth())
        ).json()
        if state["status"] == "active":
            break
        await asyncio.sleep(0.1)
    group = state["provider_id"]
    ec2 = gateway_steps.ec2(moto)
    # Not ours: no tag. Ours by its tags, in this environment, but declared by nobody.
    ec2.create_security_group(GroupName="lookalike", Description="x")
    ghost = ec2.create_security_group(
        GroupName="ghost", Description="x",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": "deployforge:id", "Value": "res_ghost"},
            {"Key": "deployforge:environment", "Value": env}]}],
    )["GroupId"]  # fmt: skip

    first = await scan(stack, env)
    assert first["status"] == "completed", first
    assert (first["drifts_detected"], first["critical"], first["new"]) == (1, 0, 1)
    [unexpected] = first["findings"]
    assert unexpected["kind"] == "unexpected"
    assert unexpected["address"] == f"aws/security_group/{ghost}"

    # Out of band: SSH from anywhere; and the tags reordered (which is no drift).
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=SSH_OPEN)
    ec2.delete_tags(Resources=[group], Tags=[{"Key": "team"}])
    ec2.create_tags(Resources=[group], Tags=[{"Key": "team", "Value": "web"}])
    second = await scan(stack, env)
    assert (second["drifts_detected"], second["critical"], second["new"]) == (2, 1, 1)
    [critical] = [f for f in second["findings"] if f["severity"] == "critical"]
    assert critical["kind"] == "changed" and critical["resource_id"] == resource
    [difference] = critical["differences"]
    assert difference["pointer"] == "/ingress/-" and difference["expected"] is None
    assert (difference["actual"]["from_port"], difference["actual"]["cidrs"]) == (
        22,
        ["0.0.0.0/0"],
    )
    [seed_shape] = second["critical_findings"]
    assert seed_shape["resource_id"] == resource
    assert seed_shape["actual_config"]["/ingress/-"]["from_port"] == 22

    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=SSH_OPEN)
    third = await scan(stack, env)
    assert (third["resolved"], third["critical"], third["drifts_detected"]) == (1, 0, 1)
    resolved = await (
        await stack.client.get(
            f"/v1/environments/{env}/drift-findings",
            params={"state": "resolved"},
            headers=stack.auth(),
        )
    ).json()
    assert [f["id"] for f in resolved["items"]] == [critical["id"]]

    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=SSH_OPEN)
    fourth = await scan(stack, env)
    assert (fourth["reopened"], fourth["critical"]) == (1, 1)
    scans = await (
        await stack.client.get(f"/v1/environments/{env}/drift-scans", headers=stack.auth())
    ).json()
    assert [s["id"] for s in scans["items"]] == [
        first["id"],
        second["id"],
        third["id"],
        fourth["id"],
    ]

    delivered = await receiver.wait_for(
        lambda rs: (
            sum(r.payload.get("type") == "drift.scan_completed" for r in rs) >= 4
            and any(r.payload.get("type") == "drift.resolved" for r in rs)
        )
    )
    detected = [
        verify(secret, r)["data"] for r in delivered if r.payload["type"] == "drift.detected"
    ]
    assert {(d["severity"], d["change"]) for d in detected} >= {
        ("critical", "new"),
        ("critical", "reopened"),
    }

    rival = await stack.outsider()
    for path in (
        f"/v1/drift-scans/{fourth['id']}",
        f"/v1/environments/{env}/drift-scans",
        f"/v1/environments/{env}/drift-findings",
    ):
        resp = await stack.client.get(path, headers=rival)
        assert resp.status == 404, path
    resp = await stack.client.post(f"/v1/environments/{env}/drift-scans", headers=rival)
    assert resp.status == 404


async def test_a_provider_that_cannot_be_read_fails_the_scan_and_resolves_nothing(
    stack: Stack, moto: MotoServer
) -> None:
    await stack.start("drift", drift_aws_endpoint_url=moto.url)
    env = await environment(stack, credentials=False)
    # Nothing declared and no credentials: no provider to read (the services still are).
    nothing = await scan(stack, env)
    assert (nothing["status"], nothing["resources"], nothing["drifts_detected"]) == (
        "completed",
        0,
        0,
    )
    declared = {"environment_id": env, "type": "volume", "specs": {"size": 10}}
    resp = await stack.client.post(
        "/v1/infrastructure/resources", json=declared, headers=stack.auth()
    )
    assert resp.status == 202, await resp.text()
    failed = await scan(stack, env)
    assert failed["status"] == "failed"
    assert failed["reason"] == (
        "the provider could not be read: the environment has no AWS credentials"
    )
    assert failed["findings"] == [] and failed["drifts_detected"] is None
