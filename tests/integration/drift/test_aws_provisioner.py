"""Provisioning to a spec against moto's server: each type made, tagged, found again by a
repeated job instead of made twice, brought back to its spec (the remediation of drift),
and deleted. Out-of-band changes are made with boto3, as someone at the console would."""

from __future__ import annotations

from typing import Any

import boto3

from services.drift import specs
from services.drift.aws import SETS, Credentials
from services.drift.aws_provision import AwsProvisioner, desired_attributes
from services.drift.diff import diff
from tests.moto_server import MotoServer

REGION = "eu-west-1"


def _provisioner(moto: MotoServer) -> AwsProvisioner:
    credentials = Credentials(access_key_id="testing", secret_access_key="testing")
    return AwsProvisioner(REGION, credentials, endpoint_url=moto.url)


def _ec2(moto: MotoServer) -> Any:
    return boto3.client(
        "ec2", region_name=REGION, endpoint_url=moto.url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def _compared(wanted: dict[str, Any], attributes: dict[str, Any], kind: str) -> list[Any]:
    return diff(wanted, {k: attributes.get(k) for k in wanted}, sets=SETS.get(kind, ()))


async def test_a_security_group_is_made_to_its_spec_once_and_brought_back_to_it(
    moto: MotoServer,
) -> None:
    aws = _provisioner(moto)
    spec = specs.check(
        "security_group",
        {"description": "web", "ingress": [
            {"from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]},
            {"from_port": 5432, "to_port": 5432, "cidrs": ["10.0.0.0/8", "10.1.0.0/16"]},
        ]},
    )  # fmt: skip
    tags = {"team": "web"}
    group = await aws.provision("res_sg1", "security_group", spec, tags)
    # A job repeated after a crash finds the group instead of making a second one.
    assert await aws.provision("res_sg1", "security_group", spec, tags) == group
    observed = await aws.observe("security_group", "res_sg1")
    assert observed is not None and observed.provider_id == group
    wanted = desired_attributes(spec, tags)
    assert _compared(wanted, observed.attributes, "security_group") == []

    ec2 = _ec2(moto)
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )  # fmt: skip
    ec2.create_tags(Resources=[group], Tags=[{"Key": "team", "Value": "someone"}])
    drifted = await aws.observe("security_group", "res_sg1")
    assert drifted is not None
    assert {d.pointer for d in _compared(wanted, drifted.attributes, "security_group")} == {
        "/ingress/-",
        "/tags/team",
    }
    await aws.apply("security_group", "res_sg1", group, spec, tags)  # remediation
    healed = await aws.observe("security_group", "res_sg1")
    assert healed is not None
    assert _compared(wanted, healed.attributes, "security_group") == []

    await aws.delete("security_group", "res_sg1", group)
    assert await aws.observe("security_group", "res_sg1") is None
    await aws.delete("security_group", "res_sg1", group)  # gone already: fine


async def test_servers_volumes_and_buckets_are_made_changed_and_deleted(moto: MotoServer) -> None:
    aws = _provisioner(moto)
    group_spec = specs.check("security_group", {"ingress": []})
    group = await aws.provision("res_sg", "security_group", group_spec, {})
    server_spec = specs.check(
        "server", {"instance_type": "t3.small", "storage": 30, "security_group_ids": [group]}
    )
    instance = await aws.provision("res_vm", "server", server_spec, {"role": "api"})
    assert await aws.provision("res_vm", "server", server_spec, {"role": "api"}) == instance
    observed = await aws.observe("server", "res_vm")
    assert observed is not None
    assert _compared(desired_attributes(server_spec, {"role": "api"}), observed.attributes,
                     "server") == []  # fmt: skip
    bigger = specs.check("server", {"instance_type": "t3.large", "security_group_ids": [group]})
    await aws.apply("server", "res_vm", instance, bigger, {"role": "api"})
    changed = await aws.observe("server", "res_vm")
    assert changed is not None and changed.attributes["instance_type"] == "t3.large"

    volume_spec = specs.check("volume", {"size": 20, "volume_type": "gp3"})
    volume = await aws.provision("res_vol", "volume", volume_spec, {})
    assert await aws.provision("res_vol", "volume", volume_spec, {}) == volume
    await aws.apply("volume", "res_vol", volume, specs.check("volume", {"size": 40}), {})
    grown = await aws.observe("volume", "res_vol")
    assert grown is not None and grown.attributes["size"] == 40

    bucket_spec = specs.check("bucket", {"name": "df-test-assets", "versioning": True})
    assert await aws.provision("res_b", "bucket", bucket_spec, {"env": "prod"}) == "df-test-assets"
    bucket = await aws.observe("bucket", "res_b")
    assert bucket is not None
    assert _compared(desired_attributes(bucket_spec, {"env": "prod"}), bucket.attributes,
                     "bucket") == []  # fmt: skip

    for kind, resource_id, provider_id in (
        ("server", "res_vm", instance), ("volume", "res_vol", volume),
        ("bucket", "res_b", "df-test-assets"),
    ):  # fmt: skip
        await aws.delete(kind, resource_id, provider_id)
        assert await aws.observe(kind, resource_id) is None, kind
