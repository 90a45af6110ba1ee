"""The drift service's NATS micro endpoints: decode, call the handler, encode."""

from __future__ import annotations

from typing import Any

from libs.messaging import Endpoint, bind
from services.drift import commands as c
from services.drift import handlers as h
from services.drift.handlers import DriftDeps

SERVICE = "drift"


def endpoints(deps: DriftDeps) -> dict[str, Endpoint[Any]]:
    return {
        "request_resource": bind(deps, c.RequestResource, h.request_resource),
        "change_resource": bind(deps, c.ChangeResource, h.change_resource),
        "delete_resource": bind(deps, c.DeleteResource, h.delete_resource),
        "request_scan": bind(deps, c.RequestScan, h.request_scan),
        "acknowledge_finding": bind(deps, c.AcknowledgeFinding, h.acknowledge_finding),
        "ignore_finding": bind(deps, c.IgnoreFinding, h.ignore_finding),
        "act_on_finding": bind(deps, c.FindingCommand, h.act_on_finding),
        "add_ignore_rule": bind(deps, c.AddIgnoreRule, h.add_ignore_rule),
        "remove_ignore_rule": bind(deps, c.RemoveIgnoreRule, h.remove_ignore_rule),
        "set_schedule": bind(deps, c.SetSchedule, h.set_schedule),
        "remove_schedule": bind(deps, c.RemoveSchedule, h.remove_schedule),
    }
