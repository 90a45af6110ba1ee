"""Infrastructure resources through the gateway, provisioned by the drift service's jobs
against moto's server with the environment's own (sealed) credentials: declared (202),
provisioned, changed, deleted; refused at the door naming the field; failed with the
reason when the environment has no credentials; invisible to other organizations."""

from __future__ import annotations

from typing import Any

import asyncpg
import boto3
import nats
import pytest

from libs.eventstore import EventStore
from libs.replay import replay
from services.drift.projection import DriftProjection
from tests.conftest import Stack
from tests.integration.drift.through_the_gateway import environment, resource_until
from tests.moto_server import MotoServer
from tests.receivers import Receivers, verify

REGION = "eu-west-1"
CANARY = "s3cr3t-canary-value"  # the environment's secret key: never seen again


@pytest.fixture
async def drift(stack: Stack, moto: MotoServer) -> Stack:
    await stack.start("drift", drift_aws_endpoint_url=moto.url)
    return stack


def _ec2(moto: MotoServer) -> Any:
    return boto3.client(
        "ec2", region_name=REGION, endpoint_url=moto.url,
        aws_access_key_id="AKIATEST", aws_secret_access_key=CANARY,
    )  # fmt: skip


async def test_a_security_group_is_provisioned_changed_and_deleted_by_jobs(
    drift: Stack, moto: MotoServer, receivers: Receivers
) -> None:
    stack = drift
    await stack.start_webhooks()
    receiver = await receivers()
    hook = await stack.client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["infrastructure.*"]},
        headers=stack.auth(),
    )
    secret = (await hook.json())["secret"]
    env = await environment(stack, secret=CANARY)
    body = {
        "environment_id": env,
        "type": "security_group",
        "provider": "aws",
        "specs": {"description": "web", "ingress": [
            {"from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]},
            {"from_port": 22, "to_port": 22, "cidrs": ["203.0.113.0/24"]},
        ]},
        "tags": {"team": "web"},
    }  # fmt: skip
    resp = await stack.client.post("/v1/infrastructure/resources", json=body, headers=stack.auth())
    assert resp.status == 202, await resp.text()
    declared = await resp.json()
    assert declared["status"] == "provisioning" and declared["region"] == REGION
    assert resp.headers["Location"] == f"/v1/infrastructure/resources/{declared['id']}"

    active = await resource_until(
        stack, declared["id"], lambda r: r["status"] in ("active", "failed")
    )
    assert active["status"] == "active", active
    group = active["provider_id"]
    assert group.startswith("sg-")
    [described] = _ec2(moto).describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert {"Key": "deployforge:id", "Value": declared["id"]} in described["Tags"]
    assert {p["FromPort"] for p in described["IpPermissions"]} == {22, 443}

    listed = await (
        await stack.client.get(
            "/v1/infrastructure/resources",
            params={"environment_id": env, "type": "security_group"},
            headers=stack.auth(),
        )
    ).json()
    assert [r["id"] for r in listed["items"]] == [declared["id"]]

    # Close SSH: applied by a job.
    patch = {"specs": {"description": "web", "ingress": [
        {"from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]}]}}  # fmt: skip
    resp = await stack.client.patch(
        f"/v1/infrastructure/resources/{declared['id']}", json=patch, headers=stack.auth()
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["status"] == "updating"
    await resource_until(stack, declared["id"], lambda r: r["status"] == "active")
    [changed] = _ec2(moto).describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert {p["FromPort"] for p in changed["IpPermissions"]} == {443}

    resp = await stack.client.delete(
        f"/v1/infrastructure/resources/{declared['id']}", headers=stack.auth()
    )
    assert resp.status == 202, await resp.text()
    await resource_until(stack, declared["id"], lambda r: r["status"] == 404)
    assert not _ec2(moto).describe_security_groups(
        Filters=[{"Name": "group-id", "Values": [group]}]
    )["SecurityGroups"]

    # The credentials were used, and are nowhere to be read.
    nc = await nats.connect(stack.suite.nats_url)
    try:
        js = nc.jetstream()
        stream = f"{stack.suite.namespace.upper()}_DRIFT"
        info = await js.stream_info(stream)
        for seq in range(1, (info.state.last_seq or 0) + 1):
            assert CANARY.encode() not in (await js.get_msg(stream, seq)).data
    finally:
        await nc.close()
    assert CANARY not in str(listed) and CANARY not in str(active)
    kinds = ["infrastructure.resource_requested", "infrastructure.resource_provisioned",
             "infrastructure.resource_updated", "infrastructure.resource_deleted"]  # fmt: skip
    delivered = await receiver.wait_for(
        lambda rs: {r.payload.get("type") for r in rs} >= set(kinds)
    )
    provisioned = next(verify(secret, r) for r in delivered if r.payload["type"] == kinds[1])
    assert provisioned["data"] == {"resource_id": declared["id"], "provider_id": group}
    assert all(CANARY.encode() not in r.body for r in delivered)

    # A replayed read model equals the live one.
    query = "SELECT * FROM drift.resources ORDER BY id"
    conn = await asyncpg.connect(stack.suite.database_url)
    try:
        live = [dict(r) for r in await conn.fetch(query)]
        nc = await nats.connect(stack.suite.nats_url)
        try:
            store = EventStore(nc.jetstream(), namespace=stack.suite.namespace)
            await replay(DriftProjection(), stack.suite.database_url, store)
        finally:
            await nc.close()
        assert [dict(r) for r in await conn.fetch(query)] == live
        assert [r["status"] for r in live] == ["deleted"]
    finally:
        await conn.close()


async def test_bad_specs_are_refused_naming_the_field_and_the_seeds_sizes_accepted(
    drift: Stack,
) -> None:
    stack = drift
    env = await environment(stack, secret=CANARY)
    cases = [
        ({"type": "server", "specs": {"instance_type": "big!"}}, "$.specs.instance_type"),
        ({"type": "server", "specs": {"instance_type": "t3.large", "storage": "lots"}},
         "$.specs.storage"),
        ({"type": "security_group", "specs": {"ingress": [
            {"from_port": 22, "to_port": 22, "cidrs": ["0.0.0.0/33"]}]}},
         "$.specs.ingress[0].cidrs[0]"),
        ({"type": "database", "specs": {}}, "$.type"),
        ({"type": "bucket", "specs": {"name": "df-bucket"}, "tags": {"aws:x": "y"}}, "$.tags"),
    ]  # fmt: skip
    for extra, field in cases:
        resp = await stack.client.post(
            "/v1/infrastructure/resources",
            json={"environment_id": env, **extra},
            headers=stack.auth(),
        )
        assert resp.status == 422, (extra, await resp.text())
        assert (await resp.json())["error"]["details"]["field"].startswith(field), extra
    # The platform seed's "100GB" is 100 GiB.
    resp = await stack.client.post(
        "/v1/infrastructure/resources",
        json={"environment_id": env, "type": "server",
              "specs": {"instance_type": "t3.large", "storage": "100GB"}},
        headers=stack.auth(),
    )  # fmt: skip
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["specs"]["storage"] == 100


async def test_without_credentials_the_job_fails_saying_why(drift: Stack) -> None:
    stack = drift
    env = await environment(stack, credentials=False)
    resp = await stack.client.post(
        "/v1/infrastructure/resources",
        json={"environment_id": env, "type": "volume", "specs": {"size": 10}},
        headers=stack.auth(),
    )
    assert resp.status == 202, await resp.text()
    failed = await resource_until(
        stack, (await resp.json())["id"], lambda r: r["status"] == "failed"
    )
    assert failed["last_error"] == "the environment has no AWS credentials"
    assert failed["last_operation"] == "provision"


async def test_another_organizations_resources_do_not_exist_for_it(drift: Stack) -> None:
    stack = drift
    env = await environment(stack, secret=CANARY)
    resp = await stack.client.post(
        "/v1/infrastructure/resources",
        json={"environment_id": env, "type": "volume", "specs": {"size": 10}},
        headers=stack.auth(),
    )
    resource = (await resp.json())["id"]
    rival = await stack.outsider()
    for method, path, body in (
        ("GET", f"/v1/infrastructure/resources/{resource}", None),
        ("PATCH", f"/v1/infrastructure/resources/{resource}", {"tags": {"a": "b"}}),
        ("DELETE", f"/v1/infrastructure/resources/{resource}", None),
    ):
        resp = await stack.client.request(method, path, json=body, headers=rival)
        assert resp.status == 404, (method, await resp.text())
    # Nor can its environment be named by them.
    resp = await stack.client.post(
        "/v1/infrastructure/resources",
        json={"environment_id": env, "type": "volume", "specs": {"size": 10}},
        headers=rival,
    )
    assert resp.status == 404
    assert (await resp.json())["error"]["details"]["field"] == "$.environment_id"
    listed = await (await stack.client.get("/v1/infrastructure/resources", headers=rival)).json()
    assert listed["items"] == []
