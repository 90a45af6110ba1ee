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
    }
