"""Reading AWS for drift, against moto's server: only DeployForge's tagged resources,
normalized so that what AWS reorders or merges is not drift, and an out-of-band rule
that opens SSH to the world is a critical difference."""

from __future__ import annotations

from typing import Any

import boto3

from services.drift import findings as f
from services.drift.aws import SETS, TAG, AwsReader, Credentials
from services.drift.diff import diff
from tests.moto_server import MotoServer

REGION = "eu-west-1"
CREDENTIALS = Credentials(access_key_id="testing", secret_access_key="testing")


def _aws(moto: MotoServer, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _web_group(ec2: Any, deployforge_id: str | None) -> str:
    tags = [{"Key": "team", "Value": "web"}]
    if deployforge_id:
        tags.append({"Key": TAG, "Value": deployforge_id})
    group = ec2.create_security_group(
        GroupName=f"web-{deployforge_id or 'lookalike'}",
        Description="web",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
             "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "10.1.0.0/16"}]},
        ],
    )  # fmt: skip
    return str(group)


async def test_only_tagged_resources_are_read_in_a_normalized_shape(moto: MotoServer) -> None:
    ec2, s3 = _aws(moto, "ec2"), _aws(moto, "s3")
    group = _web_group(ec2, "res_sg")
    _web_group(ec2, None)  # a look-alike nobody declared through DeployForge
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(
        ImageId=image, InstanceType="t3.small", MinCount=1, MaxCount=1, SecurityGroupIds=[group],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": "res_vm"}]}],
    )  # fmt: skip
    ec2.create_volume(
        AvailabilityZone=f"{REGION}a", Size=20, VolumeType="gp3",
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": TAG, "Value": "res_vol"}]}],
    )  # fmt: skip
    s3.create_bucket(Bucket="df-assets", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_tagging(Bucket="df-assets", Tagging={"TagSet": [{"Key": TAG, "Value": "res_b"}]})
    s3.put_bucket_versioning(Bucket="df-assets", VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(
        Bucket="someone-else", CreateBucketConfiguration={"LocationConstraint": REGION}
    )

    observed = await AwsReader(REGION, CREDENTIALS, endpoint_url=moto.url).read()
    by_id = {o.deployforge_id: o for o in observed}
    assert set(by_id) == {"res_sg", "res_vm", "res_vol", "res_b"}
    sg = by_id["res_sg"].attributes
    assert sg["tags"] == {"team": "web"}  # our own tag is not an attribute
    assert {(r["from_port"], tuple(r.get("cidrs", []))) for r in sg["ingress"]} == {
        (443, ("0.0.0.0/0",)),
        (5432, ("10.0.0.0/8",)),
        (5432, ("10.1.0.0/16",)),
    }
    assert by_id["res_vm"].attributes["instance_type"] == "t3.small"
    assert by_id["res_vm"].attributes["security_group_ids"] == [group]
    assert by_id["res_vol"].attributes["size"] == 20
    assert by_id["res_b"].attributes["versioning"] is True


async def test_ssh_opened_out_of_band_is_a_critical_difference_and_order_is_not(
    moto: MotoServer,
) -> None:
    ec2 = _aws(moto, "ec2")
    group = _web_group(ec2, "res_sg")
    reader = AwsReader(REGION, CREDENTIALS, endpoint_url=moto.url)
    [desired] = await reader.security_groups()
    spec = dict(desired.attributes)
    # The same rules in another order, declared differently: no drift.
    shuffled = {**spec, "ingress": list(reversed(spec["ingress"]))}
    assert diff(shuffled, desired.attributes, sets=SETS["security_group"]) == []

    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )  # fmt: skip
    [actual] = await reader.security_groups()
    differences = diff(spec, actual.attributes, sets=SETS["security_group"])
    assert [(d.pointer, d.expected, d.actual["from_port"]) for d in differences] == [
        ("/ingress/-", None, 22)
    ]
    finding = f.finding("security_group", f"aws/security_group/{group}", f.CHANGED, differences)
    assert finding.severity == "critical"

    ec2.revoke_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )  # fmt: skip
    [revoked] = await reader.security_groups()
    assert diff(spec, revoked.attributes, sets=SETS["security_group"]) == []
