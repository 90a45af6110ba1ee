"""What AWS says exists, read with aiobotocore, in the shape drift compares.

Every resource DeployForge makes carries the tag `deployforge:id` (its
DeployForge id); `read` returns the tagged ones and, separately, nothing
else: look-alikes without the tag are not ours and never reported. Each
resource is normalized so that what AWS reorders or merges is not drift:

- security-group rules are exploded to one member per source (a CIDR, an IPv6
  CIDR or a group) and compared as a set; AWS merging two rules with the same
  ports into one permission changes nothing here;
- tags become a mapping (their order means nothing);
- lists that are sets (security groups of an instance) are sorted.

An endpoint URL can be given (moto's server in tests, or any S3/EC2-compatible
API); credentials are the environment's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from aiobotocore.session import get_session
from botocore.config import Config

TAG = "deployforge:id"
# The environment a resource was declared in: a scan of one environment never reports
# another's resources (same account and region) as unexpected.
ENVIRONMENT_TAG = "deployforge:environment"
# Buckets read at once (each is three requests: S3 cannot list by tag).
BUCKETS_AT_ONCE = 16
_LIVE_STATES = ["pending", "running", "stopping", "stopped"]  # not terminated
# Which lists of each resource type are sets (for services.drift.diff).
SETS: dict[str, tuple[str, ...]] = {
    "security_group": ("/ingress", "/egress"),
    "server": ("/security_group_ids",),
}


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class Observed(msgspec.Struct, frozen=True, kw_only=True):
    """One resource as AWS has it: its type, provider id, DeployForge id, attributes."""

    resource_type: str
    provider_id: str
    deployforge_id: str
    attributes: dict[str, Any]
    environment_id: str | None = None


class AwsReader:
    def __init__(
        self, region: str, credentials: Credentials, *, endpoint_url: str | None = None
    ) -> None:
        self.region = region
        self.credentials = credentials
        self.endpoint_url = endpoint_url
        self._config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            max_pool_connections=BUCKETS_AT_ONCE,
        )

    @asynccontextmanager
    async def _client(self, service: str) -> AsyncIterator[Any]:
        session = get_session()
        async with session.create_client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            aws_session_token=self.credentials.session_token,
            config=self._config,
        ) as client:
            yield client

    async def read(self) -> list[Observed]:
        """Every tagged resource of the supported types, in a stable order (the four
        kinds read at once)."""
        kinds = await asyncio.gather(
            self.security_groups(), self.servers(), self.volumes(), self.buckets()
        )
        found = [observed for kind in kinds for observed in kind]
        return sorted(found, key=lambda o: (o.resource_type, o.provider_id))

    async def security_groups(self) -> list[Observed]:
        async with self._client("ec2") as ec2:
            pages = ec2.get_paginator("describe_security_groups").paginate(
                Filters=[{"Name": "tag-key", "Values": [TAG]}]
            )
            groups = [g async for page in pages for g in page["SecurityGroups"]]
        return [
            Observed(
                resource_type="security_group",
                provider_id=group["GroupId"],
                deployforge_id=_tags(group)[TAG],
                environment_id=_tags(group).get(ENVIRONMENT_TAG),
                attributes={
                    "name": group.get("GroupName"),
                    "description": group.get("Description"),
                    "vpc_id": group.get("VpcId"),
                    "ingress": rules(group.get("IpPermissions", [])),
                    "egress": rules(group.get("IpPermissionsEgress", [])),
                    "tags": _user_tags(group),
                },
            )
            for group in groups
        ]

    async def servers(self) -> list[Observed]:
        async with self._client("ec2") as ec2:
            pages = ec2.get_paginator("describe_instances").paginate(
                Filters=[
                    {"Name": "tag-key", "Values": [TAG]},
                    {
                        "Name": "instance-state-name",
                        "Values": ["pending", "running", "stopping", "stopped"],
                    },
                ]
            )
            instances = [
                i async for page in pages for r in page["Reservations"] for i in r["Instances"]
            ]
        return [
            Observed(
                resource_type="server",
                provider_id=instance["InstanceId"],
                deployforge_id=_tags(instance)[TAG],
                environment_id=_tags(instance).get(ENVIRONMENT_TAG),
                attributes={
                    "instance_type": instance.get("InstanceType"),
                    "state": instance.get("State", {}).get("Name"),
                    "image_id": instance.get("ImageId"),
                    "security_group_ids": sorted(
                        g["GroupId"] for g in instance.get("SecurityGroups", [])
                    ),
                    "tags": _user_tags(instance),
                },
            )
            for instance in instances
        ]

    async def volumes(self) -> list[Observed]:
        async with self._client("ec2") as ec2:
            pages = ec2.get_paginator("describe_volumes").paginate(
                Filters=[{"Name": "tag-key", "Values": [TAG]}]
            )
            volumes = [v async for page in pages for v in page["Volumes"]]
        return [
            Observed(
                resource_type="volume",
                provider_id=volume["VolumeId"],
                deployforge_id=_tags(volume)[TAG],
                environment_id=_tags(volume).get(ENVIRONMENT_TAG),
                attributes={
                    "size": volume.get("Size"),
                    "volume_type": volume.get("VolumeType"),
                    "availability_zone": volume.get("AvailabilityZone"),
                    "tags": _user_tags(volume),
                },
            )
            for volume in volumes
        ]

    async def buckets(self) -> list[Observed]:
        """S3 has no filter by tag: each bucket's tags, versioning and public access
        block are asked for, BUCKETS_AT_ONCE buckets at a time."""
        at_once = asyncio.Semaphore(BUCKETS_AT_ONCE)
        async with self._client("s3") as s3:

            async def one(name: str) -> Observed | None:
                async with at_once:
                    tags = await _bucket_tags(s3, name)
                    if TAG not in tags:
                        return None
                    versioning = await s3.get_bucket_versioning(Bucket=name)
                    access = await _public_access_block(s3, name)
                return Observed(
                    resource_type="bucket",
                    provider_id=name,
                    deployforge_id=tags[TAG],
                    environment_id=tags.get(ENVIRONMENT_TAG),
                    attributes={
                        "versioning": versioning.get("Status") == "Enabled",
                        "public_access_block": access,
                        "tags": _ours_removed(tags),
                    },
                )

            names = [b["Name"] for b in (await s3.list_buckets()).get("Buckets", [])]
            read = await asyncio.gather(*(one(name) for name in names))
        return [observed for observed in read if observed is not None]


def rules(permissions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """IpPermissions exploded to one rule per source, sorted (a set)."""
    out: list[dict[str, Any]] = []
    for permission in permissions:
        base = {
            "protocol": str(permission.get("IpProtocol", "-1")),
            "from_port": permission.get("FromPort"),
            "to_port": permission.get("ToPort"),
        }
        for r in permission.get("IpRanges", []):
            out.append({**base, "cidrs": [r["CidrIp"]]})
        for r in permission.get("Ipv6Ranges", []):
            out.append({**base, "ipv6_cidrs": [r["CidrIpv6"]]})
        for r in permission.get("UserIdGroupPairs", []):
            out.append({**base, "group": r.get("GroupId")})
    return sorted(out, key=lambda rule: msgspec.json.encode(rule, order="sorted"))


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _user_tags(resource: dict[str, Any]) -> dict[str, str]:
    return _ours_removed(_tags(resource))


def _ours_removed(tags: dict[str, str]) -> dict[str, str]:
    """The tags a user declared: DeployForge's own (`deployforge:*`) are not attributes."""
    return {k: v for k, v in tags.items() if not k.startswith("deployforge:")}


async def _bucket_tags(s3: Any, name: str) -> dict[str, str]:
    try:
        tagging = await s3.get_bucket_tagging(Bucket=name)
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        raise
    return {t["Key"]: t["Value"] for t in tagging.get("TagSet", [])}


async def _public_access_block(s3: Any, name: str) -> dict[str, bool]:
    try:
        answer = await s3.get_public_access_block(Bucket=name)
    except s3.exceptions.ClientError as exc:
        if "NoSuchPublicAccessBlockConfiguration" in str(exc):
            return {}
        raise
    config = answer.get("PublicAccessBlockConfiguration", {})
    return {
        "block_public_acls": bool(config.get("BlockPublicAcls")),
        "ignore_public_acls": bool(config.get("IgnorePublicAcls")),
        "block_public_policy": bool(config.get("BlockPublicPolicy")),
        "restrict_public_buckets": bool(config.get("RestrictPublicBuckets")),
    }
