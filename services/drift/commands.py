"""The commands the drift service accepts over NATS (and the HTTP bodies behind them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Region = Annotated[str, Meta(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", max_length=32)]
ResourceType = Literal["server", "security_group", "volume", "bucket"]


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class RequestResource(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    organization_id: Id | None = None  # None: the caller's default organization
    environment_id: Id
    type: ResourceType
    provider: Literal["aws"] = "aws"
    region: Region | None = None  # None: the environment's region
    specs: dict[str, Any]
    tags: dict[str, str] = {}


class ChangeResource(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resource_id: Id
    specs: dict[str, Any] | None = None
    tags: dict[str, str] | None = None


class DeleteResource(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resource_id: Id


class Created(msgspec.Struct, frozen=True, kw_only=True):
    id: str


class RequestScan(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: Id


Reason = Annotated[str, Meta(min_length=1, max_length=500)]
When = Annotated[datetime, Meta(tz=True)]  # with its offset: 2027-01-01T00:00:00Z
Glob = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:/*?\[\]-]+$")]
# A JSON pointer pattern ("" is the whole resource): `/tags/owner`, `/ingress/-`, `/a/*/b`.
PointerPattern = Annotated[str, Meta(max_length=300, pattern=r"^(/[A-Za-z0-9_.:*?~\[\]-]*)*$")]


class AcknowledgeFinding(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    finding_id: Id
    reason: Reason | None = None


class IgnoreFinding(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    finding_id: Id
    reason: Reason
    until: When | None = None


class FindingCommand(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Reopen, remediate or accept one finding."""

    finding_id: Id
    action: Literal["reopen", "remediate", "accept"]
    # A service's remediation: the deployment the gateway started for it.
    deployment_id: Id | None = None


class AddIgnoreRule(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: Id
    resource_type: Glob = "*"
    resource: Glob = "*"
    pointer: PointerPattern = ""
    reason: Reason
    expires_at: When | None = None


class RemoveIgnoreRule(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rule_id: Id


CRON = r"^[0-9*/,\- A-Za-z]+$"  # five fields (schedules.check says which)


class SetSchedule(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: Id
    interval_seconds: Annotated[int, Meta(ge=1, le=31 * 86400)] | None = None
    cron: Annotated[str, Meta(min_length=9, max_length=100, pattern=CRON)] | None = None
    mode: Literal["detect", "remediate"] = "detect"


class RemoveSchedule(Command, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment_id: Id
