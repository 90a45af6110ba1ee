"""What people do with findings, through the gateway against moto's server: an ignore
rule silences a path in scans and remediation alike; remediate takes the SSH rule away
and leaves the ignored tag as it is; acknowledge, ignore (not in the past), reopen;
accept makes a tag added out of band part of the spec; an unexpected resource is
never deleted; another organization sees none of it."""

from __future__ import annotations

from typing import Any

from tests.conftest import Stack
from tests.integration.drift import through_the_gateway as gateway_steps
from tests.integration.drift.through_the_gateway import environment, resource_until, scan
from tests.moto_server import MotoServer

SSH_OPEN = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]  # fmt: skip


async def _post(stack: Stack, path: str, body: Any = None, headers: Any = None) -> Any:
    resp = await stack.client.post(path, json=body, headers=headers or stack.auth())
    return resp.status, await resp.json() if resp.status != 204 else None


def _tags(ec2: Any, group: str) -> dict[str, str]:
    [described] = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    return {t["Key"]: t["Value"] for t in described.get("Tags", [])}


def _world_ssh(ec2: Any, group: str) -> bool:
    [described] = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    return any(
        p.get("FromPort") == 22 and {"CidrIp": "0.0.0.0/0"} in p.get("IpRanges", [])
        for p in described["IpPermissions"]
    )


async def test_rules_remediation_triage_and_acceptance(stack: Stack, moto: MotoServer) -> None:
    await stack.start("drift", drift_aws_endpoint_url=moto.url)
    env = await environment(stack)
    declared = {
        "environment_id": env,
        "type": "security_group",
        "specs": {"description": "web", "ingress": [
            {"from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]}]},
        "tags": {"team": "web"},
    }  # fmt: skip
    status, body = await _post(stack, "/v1/infrastructure/resources", declared)
    assert status == 202, body
    resource = body["id"]
    group = (await resource_until(stack, resource, lambda r: r["status"] == "active"))[
        "provider_id"
    ]
    ec2 = gateway_steps.ec2(moto)

    # Out of band: SSH from anywhere, and the team tag changed by another tool.
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=SSH_OPEN)
    ec2.create_tags(Resources=[group], Tags=[{"Key": "team", "Value": "ops"}])
    first = await scan(stack, env)
    [finding] = first["findings"]
    assert finding["severity"] == "critical"
    assert [d["pointer"] for d in finding["differences"]] == ["/ingress/-", "/tags/team"]

    # An ignore rule: the team tag is the ops tool's business. A refused rule names its field.
    status, refused = await _post(
        stack, f"/v1/environments/{env}/drift-ignore-rules",
        {"pointer": "no-slash", "reason": "x"},
    )  # fmt: skip
    assert status == 422 and refused["error"]["details"]["field"] == "$.pointer"
    rule_body = {"resource_type": "security_group", "pointer": "/tags/team", "reason": "ops"}
    status, rule = await _post(stack, f"/v1/environments/{env}/drift-ignore-rules", rule_body)
    assert status == 201, rule
    resp = await stack.client.get(f"/v1/drift-ignore-rules/{rule['id']}", headers=stack.auth())
    assert resp.status == 200 and await resp.json() == rule
    second = await scan(stack, env)
    assert second["changed"] == 1
    [finding] = second["findings"]
    assert [d["pointer"] for d in finding["differences"]] == ["/ingress/-"]

    # Remediate: the SSH rule goes, the ignored tag stays as ops set it.
    status, remediating = await _post(stack, f"/v1/drift-findings/{finding['id']}/remediate")
    assert status == 202, remediating
    assert remediating["last_action"] == "remediate" and remediating["last_action_by"]
    await resource_until(stack, resource, lambda r: r["status"] == "active")
    assert not _world_ssh(ec2, group)
    assert _tags(ec2, group)["team"] == "ops"
    third = await scan(stack, env)
    assert (third["resolved"], third["drifts_detected"]) == (1, 0)
    status, again = await _post(stack, f"/v1/drift-findings/{finding['id']}/remediate")
    assert status == 409 and "resolved" in again["error"]["message"]

    # Opened again: reopened; acknowledged (still drift), ignored (not), reopened.
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=SSH_OPEN)
    assert (await scan(stack, env))["reopened"] == 1
    path = f"/v1/drift-findings/{finding['id']}"
    status, acked = await _post(stack, f"{path}/acknowledge", {"reason": "on it"})
    assert (status, acked["state"], acked["state_reason"]) == (200, "acknowledged", "on it")
    assert (await scan(stack, env))["drifts_detected"] == 1
    status, late = await _post(
        stack, f"{path}/ignore", {"reason": "x", "until": "2020-01-01T00:00:00Z"}
    )
    assert status == 422 and late["error"]["details"]["field"] == "$.until"
    status, naive = await _post(
        stack, f"{path}/ignore", {"reason": "x", "until": "2099-01-01T00:00:00"}
    )
    assert status == 422 and naive["error"]["details"]["field"] == "$.until"
    status, ignored = await _post(stack, f"{path}/ignore", {"reason": "pentest this week"})
    assert (status, ignored["state"]) == (200, "ignored")
    quiet = await scan(stack, env)
    assert (quiet["drifts_detected"], quiet["findings"]) == (0, [])
    status, reopened = await _post(stack, f"{path}/reopen")
    assert (status, reopened["state"]) == (200, "open")
    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=SSH_OPEN)

    # Accept: a tag added by hand becomes part of the spec; the next scan is clean.
    ec2.create_tags(Resources=[group], Tags=[{"Key": "cost-center", "Value": "42"}])
    [tagged] = (await scan(stack, env))["findings"]
    assert [d["pointer"] for d in tagged["differences"]] == ["/tags/cost-center"]
    status, accepted = await _post(stack, f"/v1/drift-findings/{tagged['id']}/accept")
    assert (status, accepted["last_action"]) == (202, "accept")
    applied = await resource_until(stack, resource, lambda r: r["status"] == "active")
    assert applied["tags"] == {"team": "web", "cost-center": "42"}
    assert _tags(ec2, group)["team"] == "ops"  # what the rule names is left alone
    assert (await scan(stack, env))["drifts_detected"] == 0

    # Something nobody declared is never deleted by DeployForge.
    ghost = ec2.create_security_group(
        GroupName="ghost", Description="x",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": "deployforge:id", "Value": "res_ghost"},
            {"Key": "deployforge:environment", "Value": env}]}],
    )["GroupId"]  # fmt: skip
    [stray] = (await scan(stack, env))["findings"]
    assert stray["kind"] == "unexpected"
    status, refused = await _post(stack, f"/v1/drift-findings/{stray['id']}/remediate")
    assert status == 409 and "never deletes" in refused["error"]["message"]
    assert ec2.describe_security_groups(GroupIds=[ghost])["SecurityGroups"]

    # Removing the rule: the next scan reports the tag again.
    resp = await stack.client.delete(f"/v1/drift-ignore-rules/{rule['id']}", headers=stack.auth())
    assert resp.status == 204
    back = await scan(stack, env)
    pointers = {d["pointer"] for f in back["findings"] for d in f["differences"]}
    assert "/tags/team" in pointers

    rival = await stack.outsider()
    for route in ("acknowledge", "ignore", "reopen", "remediate", "accept"):
        status, _ = await _post(stack, f"{path}/{route}", {"reason": "x"}, rival)
        assert status == 404, route
    resp = await stack.client.get(path, headers=rival)
    assert resp.status == 404
    status, _ = await _post(stack, f"/v1/environments/{env}/drift-ignore-rules", rule_body, rival)
    assert status == 404
    status, kept = await _post(stack, f"/v1/environments/{env}/drift-ignore-rules", rule_body)
    assert status == 201, kept
    for method in ("GET", "DELETE"):
        resp = await stack.client.request(
            method, f"/v1/drift-ignore-rules/{kept['id']}", headers=rival
        )
        assert resp.status == 404, method
    resp = await stack.client.get(f"/v1/drift-ignore-rules/{kept['id']}", headers=stack.auth())
    assert resp.status == 200
