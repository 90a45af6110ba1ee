"""What a resource of each type may declare: checked at the door, field by field.

The specs are stored as sent (after this check) and compared with what the
provider reports, so each type's spec uses the names the AWS reader
(services/drift/aws.py) reports its attributes under.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from libs.errors import ValidationFailed

Port = Annotated[int, Meta(ge=-1, le=65535)]
Name = Annotated[str, Meta(min_length=1, max_length=255)]
Text = Annotated[str, Meta(max_length=255)]
ProviderRef = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TYPES = ("server", "security_group", "volume", "bucket")
_SIZE = re.compile(r"\s*(\d{1,5})\s*(?:GB|GiB|G)?\s*")
TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")


class Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class IngressRule(Spec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    protocol: Literal["tcp", "udp", "icmp", "-1"] = "tcp"
    from_port: Port
    to_port: Port
    cidrs: Annotated[list[str], Meta(max_length=50)] = []
    ipv6_cidrs: Annotated[list[str], Meta(max_length=50)] = []


class SecurityGroupSpec(Spec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: Text = "managed by DeployForge"
    ingress: Annotated[list[IngressRule], Meta(max_length=60)] = []
    egress: Annotated[list[IngressRule], Meta(max_length=60)] | None = None  # None: AWS's default


class ServerSpec(Spec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    instance_type: Annotated[str, Meta(pattern=r"^[a-z0-9]+\.[a-z0-9]+$", max_length=32)]
    image_id: ProviderRef | None = None  # None: the region's first available image
    # Root volume size in GiB ("storage" in the platform seed).
    storage: Annotated[int, Meta(ge=1, le=16384)] | None = None
    # DeployForge ids of security groups declared in the same environment, or sg-... ids.
    security_group_ids: Annotated[list[ProviderRef], Meta(max_length=5)] = []


class VolumeSpec(Spec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    size: Annotated[int, Meta(ge=1, le=16384)]
    volume_type: Literal["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"] = "gp3"
    availability_zone: Annotated[str, Meta(pattern=r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")] | None = None


class BucketSpec(Spec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    versioning: bool = False
    # Block every kind of public access (the safe default).
    block_public_access: bool = True


SPECS: dict[str, type[Spec]] = {
    "server": ServerSpec,
    "security_group": SecurityGroupSpec,
    "volume": VolumeSpec,
    "bucket": BucketSpec,
}


def check(resource_type: str, specs: dict[str, Any]) -> Spec:
    """The spec as its type's struct, or a 422 naming the field under `$.specs`."""
    kind = SPECS.get(resource_type)
    if kind is None:
        raise ValidationFailed(f"type is one of {', '.join(TYPES)}", "$.type")
    storage = specs.get("storage")
    if resource_type == "server" and isinstance(storage, str):
        # The platform seed writes sizes as "100GB".
        size = _SIZE.fullmatch(storage)
        if size is None:
            raise ValidationFailed('a size in GiB, such as 100 or "100GB"', "$.specs.storage")
        specs = {**specs, "storage": int(size.group(1))}
    try:
        spec = msgspec.convert(specs, kind)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        raise ValidationFailed(message, "$.specs" + where.rstrip("`")) from None
    if isinstance(spec, SecurityGroupSpec):
        for n, rule in enumerate([*spec.ingress, *(spec.egress or [])]):
            _networks(rule, f"$.specs.ingress[{n}]")
    return spec


def _networks(rule: IngressRule, where: str) -> None:
    for field, version in (("cidrs", 4), ("ipv6_cidrs", 6)):
        for i, text in enumerate(getattr(rule, field)):
            try:
                network = ipaddress.ip_network(text, strict=True)
            except ValueError:
                raise ValidationFailed(
                    "a network such as 10.0.0.0/8", f"{where}.{field}[{i}]"
                ) from None
            if network.version != version:
                raise ValidationFailed(f"an IPv{version} network", f"{where}.{field}[{i}]")
    if rule.from_port > rule.to_port:
        raise ValidationFailed("from_port is at most to_port", f"{where}.from_port")


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > 40:
        raise ValidationFailed("at most 40 tags", "$.tags")
    for key, value in tags.items():
        if not TAG_KEY.fullmatch(key) or key.lower().startswith(("aws:", "deployforge:")):
            raise ValidationFailed(
                "a tag key of letters, digits and _ .:/=+-@ (not aws: or deployforge:)",
                f"$.tags.{key}",
            )
        if len(value) > 256:
            raise ValidationFailed("at most 256 characters", f"$.tags.{key}")
    return tags
