"""What the drift tests do through the gateway: an environment with AWS credentials, a
resource waited for, a scan waited for, and boto3 for changes made out of band."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import boto3

from tests.conftest import Stack
from tests.moto_server import MotoServer

REGION = "eu-west-1"


async def environment(
    stack: Stack, *, credentials: bool = True, secret: str = "secret", name: str = "prod"
) -> str:
    body: dict[str, Any] = {"name": name, "region": REGION}
    if credentials:
        body["credentials"] = {"aws_access_key_id": "AKIATEST", "aws_secret_access_key": secret}
    resp = await stack.client.post("/v1/environments", json=body, headers=stack.auth())
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def resource_until(
    stack: Stack, resource_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(300):
        resp = await stack.client.get(
            f"/v1/infrastructure/resources/{resource_id}", headers=stack.auth()
        )
        body = await resp.json()
        if done(body if resp.status == 200 else {"status": resp.status}):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {body}")


async def scan(stack: Stack, env: str) -> dict[str, Any]:
    """A scan requested and waited for: its detail once it ended."""
    resp = await stack.client.post(f"/v1/environments/{env}/drift-scans", headers=stack.auth())
    assert resp.status == 202, await resp.text()
    started = await resp.json()
    assert started["status"] == "running" and started["scan_id"] == started["id"]
    body: dict[str, Any] = {}
    for _ in range(300):
        resp = await stack.client.get(f"/v1/drift-scans/{started['id']}", headers=stack.auth())
        body = await resp.json()
        if body["status"] != "running":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"the scan never ended: {body}")


def ec2(moto: MotoServer, secret: str = "secret") -> Any:
    return boto3.client(
        "ec2", region_name=REGION, endpoint_url=moto.url,
        aws_access_key_id="AKIATEST", aws_secret_access_key=secret,
    )  # fmt: skip
