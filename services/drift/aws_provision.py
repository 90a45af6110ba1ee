"""Provisioning AWS resources to their spec, with aiobotocore. Idempotent: a job
repeated after a crash finds what the first attempt made instead of making twice.

- Every resource is tagged `deployforge:id = <resource id>`; that is how a
  repeat finds a half-made resource and how drift tells ours from look-alikes.
- Instances and volumes are created with the resource id as the EC2 client
  token; a security group's name is derived from the id; a bucket's name is its
  own (already ours: `BucketAlreadyOwnedByYou`).
- `apply` brings an existing resource to its spec: the rules the spec lacks
  are revoked and the missing ones authorized (a security group), the instance
  type and groups changed (a server, stopped for a new type and started
  again), the size and type modified (a volume), versioning, public access
  block and tags set (a bucket). Remediation uses the same call.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from services.drift import specs as s
from services.drift.aws import ENVIRONMENT_TAG, TAG, AwsReader, Credentials, Observed, rules
from services.drift.diff import covers, escape


def _tags(
    resource_id: str, tags: dict[str, str], environment_id: str | None = None
) -> list[dict[str, str]]:
    ours = [{"Key": TAG, "Value": resource_id}]
    if environment_id:
        ours.append({"Key": ENVIRONMENT_TAG, "Value": environment_id})
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())] + ours


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def permissions(rule_list: list[s.IngressRule]) -> list[dict[str, Any]]:
    """A spec's rules as IpPermissions."""
    out = []
    for rule in rule_list:
        permission: dict[str, Any] = {"IpProtocol": rule.protocol}
        if rule.protocol != "-1":
            permission |= {"FromPort": rule.from_port, "ToPort": rule.to_port}
        permission["IpRanges"] = [{"CidrIp": c} for c in rule.cidrs]
        permission["Ipv6Ranges"] = [{"CidrIpv6": c} for c in rule.ipv6_cidrs]
        out.append(permission)
    return out


def desired_rules(rule_list: list[s.IngressRule]) -> list[dict[str, Any]]:
    """A spec's rules in the reader's shape (one per source, sorted): what drift compares."""
    return rules(permissions(rule_list))


def _as_permission(rule: dict[str, Any]) -> dict[str, Any]:
    """One exploded rule (the reader's shape) back to an IpPermission."""
    permission: dict[str, Any] = {"IpProtocol": rule["protocol"]}
    if rule["protocol"] != "-1":
        permission |= {"FromPort": rule["from_port"], "ToPort": rule["to_port"]}
    if rule.get("cidrs"):
        permission["IpRanges"] = [{"CidrIp": c} for c in rule["cidrs"]]
    if rule.get("ipv6_cidrs"):
        permission["Ipv6Ranges"] = [{"CidrIpv6": c} for c in rule["ipv6_cidrs"]]
    if rule.get("group"):
        permission["UserIdGroupPairs"] = [{"GroupId": rule["group"]}]
    return permission


class Untouched:
    """The places a remediation leaves alone: those ignore patterns name, and any
    attribute with such a place inside it (a set of rules is applied whole or not at
    all); tags one by one."""

    def __init__(self, patterns: tuple[str, ...] = ()) -> None:
        self.patterns = patterns

    def attribute(self, name: str) -> bool:
        place = f"/{name}"
        return any(covers(p, place) or covers(place, p) for p in self.patterns)

    def tags(self, old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
        """`new`, except that an ignored tag keeps its value (or its absence)."""
        if not self.patterns:
            return new
        if any(covers(p, "/tags") for p in self.patterns):
            return dict(old)
        kept = {k: v for k, v in new.items() if not self._tag(k)}
        return kept | {k: v for k, v in old.items() if self._tag(k)}

    def _tag(self, key: str) -> bool:
        return any(covers(p, f"/tags/{escape(key)}") for p in self.patterns)


_NOTHING_KEPT = Untouched()


class AwsProvisioner(AwsReader):
    def __init__(
        self,
        region: str,
        credentials: Credentials,
        *,
        endpoint_url: str | None = None,
        environment_id: str | None = None,
    ) -> None:
        super().__init__(region, credentials, endpoint_url=endpoint_url)
        # The environment the resources are declared in (tagged on each).
        self.environment_id = environment_id

    async def provision(
        self, resource_id: str, resource_type: str, spec: s.Spec, tags: dict[str, str]
    ) -> str:
        """Create the resource (or find the one an earlier attempt made); its provider id."""
        if isinstance(spec, s.SecurityGroupSpec):
            return await self._security_group(resource_id, spec, tags)
        if isinstance(spec, s.ServerSpec):
            return await self._server(resource_id, spec, tags)
        if isinstance(spec, s.VolumeSpec):
            return await self._volume(resource_id, spec, tags)
        if isinstance(spec, s.BucketSpec):
            return await self._bucket(resource_id, spec, tags)
        raise ValueError(f"cannot provision a {resource_type}")

    async def observe(self, resource_type: str, resource_id: str) -> Observed | None:
        """The resource as AWS has it now, found by its tag."""
        readers = {
            "security_group": self.security_groups,
            "server": self.servers,
            "volume": self.volumes,
            "bucket": self.buckets,
        }
        for observed in await readers[resource_type]():
            if observed.deployforge_id == resource_id:
                return observed
        return None

    # --- security groups -----------------------------------------------------------------

    async def _security_group(
        self, resource_id: str, spec: s.SecurityGroupSpec, tags: dict[str, str]
    ) -> str:
        found = await self.observe("security_group", resource_id)
        if found is None:
            async with self._client("ec2") as ec2:
                try:
                    created = await ec2.create_security_group(
                        GroupName=f"deployforge-{resource_id}",
                        Description=spec.description,
                        TagSpecifications=[
                            {
                                "ResourceType": "security-group",
                                "Tags": _tags(resource_id, tags, self.environment_id),
                            }
                        ],
                    )
                    group_id = str(created["GroupId"])
                except ClientError as exc:
                    if _code(exc) != "InvalidGroup.Duplicate":
                        raise
                    described = await ec2.describe_security_groups(
                        Filters=[{"Name": "group-name", "Values": [f"deployforge-{resource_id}"]}]
                    )
                    group_id = str(described["SecurityGroups"][0]["GroupId"])
                    await ec2.create_tags(
                        Resources=[group_id], Tags=_tags(resource_id, tags, self.environment_id)
                    )
        else:
            group_id = found.provider_id
        await self.apply("security_group", resource_id, group_id, spec, tags)
        return group_id

    async def _rules_to(
        self, ec2: Any, group_id: str, current: list[dict[str, Any]], wanted: list[dict[str, Any]],
        *, egress: bool,
    ) -> None:  # fmt: skip
        key = _rule_key
        have, want = {key(r): r for r in current}, {key(r): r for r in wanted}
        extra = [_as_permission(r) for k, r in have.items() if k not in want]
        missing = [_as_permission(r) for k, r in want.items() if k not in have]
        revoke = ec2.revoke_security_group_egress if egress else ec2.revoke_security_group_ingress
        grant = (
            ec2.authorize_security_group_egress if egress else ec2.authorize_security_group_ingress
        )
        if extra:
            await revoke(GroupId=group_id, IpPermissions=extra)
        if missing:
            await grant(GroupId=group_id, IpPermissions=missing)

    # --- servers, volumes, buckets -------------------------------------------------------

    async def _server(self, resource_id: str, spec: s.ServerSpec, tags: dict[str, str]) -> str:
        found = await self.observe("server", resource_id)
        if found is not None:
            return found.provider_id
        async with self._client("ec2") as ec2:
            image = spec.image_id or (await ec2.describe_images())["Images"][0]["ImageId"]
            request: dict[str, Any] = {
                "ImageId": image,
                "InstanceType": spec.instance_type,
                "MinCount": 1,
                "MaxCount": 1,
                "ClientToken": resource_id,
                "TagSpecifications": [
                    {
                        "ResourceType": "instance",
                        "Tags": _tags(resource_id, tags, self.environment_id),
                    },
                    {
                        "ResourceType": "volume",
                        "Tags": _tags(resource_id, tags, self.environment_id),
                    },
                ],
            }
            if spec.security_group_ids:
                request["SecurityGroupIds"] = spec.security_group_ids
            if spec.storage:
                request["BlockDeviceMappings"] = [
                    {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": spec.storage}}
                ]
            reservation = await ec2.run_instances(**request)
        return str(reservation["Instances"][0]["InstanceId"])

    async def _volume(self, resource_id: str, spec: s.VolumeSpec, tags: dict[str, str]) -> str:
        found = await self.observe("volume", resource_id)
        if found is not None:
            return found.provider_id
        async with self._client("ec2") as ec2:
            created = await ec2.create_volume(
                AvailabilityZone=spec.availability_zone or f"{self.region}a",
                Size=spec.size,
                VolumeType=spec.volume_type,
                ClientToken=resource_id,
                TagSpecifications=[
                    {
                        "ResourceType": "volume",
                        "Tags": _tags(resource_id, tags, self.environment_id),
                    }
                ],
            )
        return str(created["VolumeId"])

    async def _bucket(self, resource_id: str, spec: s.BucketSpec, tags: dict[str, str]) -> str:
        async with self._client("s3") as s3:
            create: dict[str, Any] = {"Bucket": spec.name}
            if self.region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                await s3.create_bucket(**create)
            except ClientError as exc:
                if _code(exc) != "BucketAlreadyOwnedByYou":
                    raise
        await self.apply("bucket", resource_id, spec.name, spec, tags)
        return spec.name

    # --- to the spec ---------------------------------------------------------------------

    async def apply(
        self, resource_type: str, resource_id: str, provider_id: str, spec: s.Spec,
        tags: dict[str, str], *, ignore: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """Bring the existing resource to `spec` and `tags` (also remediation), leaving
        alone every place an ignore pattern names (`/ingress/-`, `/tags/owner`)."""
        keep = Untouched(ignore)
        if isinstance(spec, s.SecurityGroupSpec):
            found = await self.observe("security_group", resource_id)
            current = found.attributes if found else {"ingress": [], "egress": []}
            async with self._client("ec2") as ec2:
                if not keep.attribute("ingress"):
                    await self._rules_to(
                        ec2, provider_id, current["ingress"], desired_rules(spec.ingress),
                        egress=False,
                    )  # fmt: skip
                if spec.egress is not None and not keep.attribute("egress"):
                    await self._rules_to(
                        ec2, provider_id, current["egress"], desired_rules(spec.egress),
                        egress=True,
                    )  # fmt: skip
                old = current.get("tags", {})
                await self._ec2_tags(ec2, provider_id, resource_id, old, keep.tags(old, tags))
        elif isinstance(spec, s.ServerSpec):
            await self._apply_server(resource_id, provider_id, spec, tags, keep)
        elif isinstance(spec, s.VolumeSpec):
            async with self._client("ec2") as ec2:
                if not (keep.attribute("size") or keep.attribute("volume_type")):
                    await ec2.modify_volume(
                        VolumeId=provider_id, Size=spec.size, VolumeType=spec.volume_type
                    )
                found = await self.observe("volume", resource_id)
                old = found.attributes.get("tags", {}) if found else {}
                await self._ec2_tags(ec2, provider_id, resource_id, old, keep.tags(old, tags))
        elif isinstance(spec, s.BucketSpec):
            await self._apply_bucket(resource_id, spec, tags, keep)

    async def _apply_server(
        self, resource_id: str, instance_id: str, spec: s.ServerSpec, tags: dict[str, str],
        keep: Untouched,
    ) -> None:  # fmt: skip
        found = await self.observe("server", resource_id)
        if found is None:
            raise ValueError(f"instance {instance_id} is gone")
        attributes = found.attributes
        async with self._client("ec2") as ec2:
            if attributes.get("instance_type") != spec.instance_type and not keep.attribute(
                "instance_type"
            ):
                await ec2.stop_instances(InstanceIds=[instance_id])
                await ec2.modify_instance_attribute(
                    InstanceId=instance_id, InstanceType={"Value": spec.instance_type}
                )
                await ec2.start_instances(InstanceIds=[instance_id])
            if (
                spec.security_group_ids
                and sorted(spec.security_group_ids) != attributes.get("security_group_ids")
                and not keep.attribute("security_group_ids")
            ):
                await ec2.modify_instance_attribute(
                    InstanceId=instance_id, Groups=spec.security_group_ids
                )
            old = attributes.get("tags", {})
            await self._ec2_tags(ec2, instance_id, resource_id, old, keep.tags(old, tags))

    async def _apply_bucket(
        self, resource_id: str, spec: s.BucketSpec, tags: dict[str, str],
        keep: Untouched = _NOTHING_KEPT,
    ) -> None:  # fmt: skip
        async with self._client("s3") as s3:
            if not keep.attribute("versioning"):
                status = "Enabled" if spec.versioning else "Suspended"
                await s3.put_bucket_versioning(
                    Bucket=spec.name, VersioningConfiguration={"Status": status}
                )
            if keep.attribute("public_access_block"):
                pass
            elif spec.block_public_access:
                await s3.put_public_access_block(
                    Bucket=spec.name,
                    PublicAccessBlockConfiguration={
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    },
                )
            else:
                await s3.delete_public_access_block(Bucket=spec.name)
            if keep.patterns:
                found = await self.observe("bucket", resource_id)
                tags = keep.tags(found.attributes.get("tags", {}) if found else {}, tags)
            await s3.put_bucket_tagging(
                Bucket=spec.name, Tagging={"TagSet": _tags(resource_id, tags, self.environment_id)}
            )

    async def _ec2_tags(
        self, ec2: Any, provider_id: str, resource_id: str, old: dict[str, str],
        new: dict[str, str],
    ) -> None:  # fmt: skip
        gone = [{"Key": k} for k in old if k not in new]
        if gone:
            await ec2.delete_tags(Resources=[provider_id], Tags=gone)
        if new != old:
            await ec2.create_tags(
                Resources=[provider_id], Tags=_tags(resource_id, new, self.environment_id)
            )

    # --- deletion ------------------------------------------------------------------------

    async def delete(self, resource_type: str, resource_id: str, provider_id: str | None) -> None:
        """Remove the resource (found by its tag when its id was never recorded); a
        resource already gone is deleted."""
        found = await self.observe(resource_type, resource_id)
        target = found.provider_id if found is not None else provider_id
        if target is None:
            return
        try:
            if resource_type == "bucket":
                async with self._client("s3") as s3:
                    await s3.delete_bucket(Bucket=target)
                return
            async with self._client("ec2") as ec2:
                if resource_type == "security_group":
                    await ec2.delete_security_group(GroupId=target)
                elif resource_type == "server":
                    await ec2.terminate_instances(InstanceIds=[target])
                elif resource_type == "volume":
                    await ec2.delete_volume(VolumeId=target)
        except ClientError as exc:
            if "NotFound" not in _code(exc) and _code(exc) != "NoSuchBucket":
                raise


def desired_attributes(spec: s.Spec, tags: dict[str, str]) -> dict[str, Any]:
    """What the reader should report for a resource made to `spec`: the attributes drift
    compares (only these: what a spec does not declare is not drift)."""
    wanted: dict[str, Any] = {"tags": dict(tags)}
    if isinstance(spec, s.SecurityGroupSpec):
        wanted |= {"description": spec.description, "ingress": desired_rules(spec.ingress)}
        if spec.egress is not None:
            wanted["egress"] = desired_rules(spec.egress)
    elif isinstance(spec, s.ServerSpec):
        wanted["instance_type"] = spec.instance_type
        if spec.security_group_ids:
            wanted["security_group_ids"] = sorted(spec.security_group_ids)
        if spec.image_id:
            wanted["image_id"] = spec.image_id
    elif isinstance(spec, s.VolumeSpec):
        wanted |= {"size": spec.size, "volume_type": spec.volume_type}
        if spec.availability_zone:
            wanted["availability_zone"] = spec.availability_zone
    elif isinstance(spec, s.BucketSpec):
        blocked = dict.fromkeys(
            ("block_public_acls", "ignore_public_acls", "block_public_policy",
             "restrict_public_buckets"),
            True,
        )  # fmt: skip
        wanted |= {
            "versioning": spec.versioning,
            "public_access_block": blocked if spec.block_public_access else {},
        }
    return wanted


def _rule_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    return (
        rule.get("protocol"),
        rule.get("from_port"),
        rule.get("to_port"),
        tuple(rule.get("cidrs") or ()),
        tuple(rule.get("ipv6_cidrs") or ()),
        rule.get("group"),
    )
