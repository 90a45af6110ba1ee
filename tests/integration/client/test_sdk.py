"""The Python SDK against a running suite, sync and async: a real git repository
deployed and waited for, its log streamed live, a list paged through 250 items, a POST
whose answer is lost retried into exactly one resource, and errors as their classes
with the field and the request id."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from deployforge_client import AsyncDeployForge, DeployForge, NotFound, ValidationError

from tests.conftest import Stack
from tests.integration.deploy.test_agent_deploys import (  # the fixtures too
    make_service,
    repo,
    workspace,
)

__all__ = ["repo", "workspace"]  # fixtures, used by name


def _base(stack: Stack) -> str:
    return str(stack.client.make_url("")).rstrip("/")


def _token(stack: Stack) -> str:
    return stack.auth()["Authorization"].removeprefix("Bearer ")


async def test_deploy_wait_and_stream_sync_and_async(
    stack: Stack, repo: Path, workspace: Path
) -> None:
    await stack.start_agent(workspace / "agent", drain_seconds=0.2, health_timeout_seconds=15)
    deployer = await make_service(stack, repo, greeting="hello")
    base, token = _base(stack), _token(stack)

    def deploy_blocking() -> dict[str, Any]:
        with DeployForge(base, token) as df:
            run = df.services.deploy(deployer.service, environment_id=deployer.env)
            assert run.data["status"] in ("queued", "dispatched", "pending", "initializing")
            return run.wait(timeout=120, poll=0.2)

    # The server runs on this event loop: the blocking client runs in a thread.
    finished = await asyncio.to_thread(deploy_blocking)
    assert finished["status"] == "succeeded", finished

    async with AsyncDeployForge(base, token) as df:
        run = await df.services.deploy(deployer.service, environment_id=deployer.env)
        events = [event async for event in run.stream()]
        final = await run.wait(timeout=120, poll=0.2)
    assert final["status"] == "succeeded", final
    kinds = [event.event for event in events]
    assert "log" in kinds and kinds[-1] == "end", kinds
    assert events[-1].data["status"] == "succeeded"
    ids = [event.id for event in events if event.event == "log"]
    assert len(ids) == len(set(ids)), "a log line came twice"


async def test_pagination_goes_through_every_item_once(stack: Stack) -> None:
    base, token = _base(stack), _token(stack)
    async with AsyncDeployForge(base, token) as df:
        gate = asyncio.Semaphore(10)  # paging is the point, not a burst of 250 commands

        async def create(n: int) -> dict[str, Any]:
            async with gate:
                return dict(await df.projects.create(f"p-{n:03}"))

        made = await asyncio.gather(*(create(n) for n in range(250)))
        listed = [project["id"] async for project in df.paginate("/v1/projects", limit=40)]
    assert len(listed) == len(set(listed))
    assert {p["id"] for p in made} <= set(listed)

    def blocking() -> list[str]:
        with DeployForge(base, token) as df:
            return [project["id"] for project in df.projects.list()]

    assert sorted(await asyncio.to_thread(blocking)) == sorted(listed)


class LosesTheFirstAnswer(httpx.AsyncHTTPTransport):
    """The network between client and server: the first POST reaches the server and is
    handled, then its answer is lost (the connection drops)."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.method == "POST":
            self.posts.append(request.headers.get("Idempotency-Key", ""))
            if len(self.posts) == 1:
                await response.aread()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


async def test_a_post_whose_answer_is_lost_is_retried_into_one_resource(stack: Stack) -> None:
    network = LosesTheFirstAnswer()
    async with AsyncDeployForge(_base(stack), _token(stack), transport=network) as df:
        project = await df.projects.create("retried once")
        named = [p async for p in df.projects.list() if p["name"] == "retried once"]
    assert [p["id"] for p in named] == [project["id"]]
    assert len(network.posts) == 2 and network.posts[0] == network.posts[1] != ""


async def test_errors_are_their_classes_with_the_field_and_the_request_id(stack: Stack) -> None:
    async with AsyncDeployForge(_base(stack), _token(stack)) as df:
        with pytest.raises(NotFound) as missing:
            await df.projects.get("prj_nonexistent")
        assert missing.value.status == 404 and missing.value.request_id
        with pytest.raises(ValidationError) as invalid:
            await df.post("/v1/projects", {"name": "x" * 500})
        assert invalid.value.field == "$.name"
        assert "$.name" in str(invalid.value)


async def test_typed_collections_create_read_update_and_delete(stack: Stack) -> None:
    base, token = _base(stack), _token(stack)
    async with AsyncDeployForge(base, token) as df:
        made = await df.environments.create({"name": "qa"})
        assert (await df.environments.get(made["id"]))["name"] == "qa"
        changed = await df.environments.update(made["id"], {"name": "qa-2"})
        assert changed["name"] == "qa-2"
        assert made["id"] in [e["id"] async for e in df.environments.list()]

    def sync_side() -> list[str]:
        with DeployForge(base, token) as df:
            df.environments.delete(made["id"])  # read-your-writes: the list no longer has it
            return [e["id"] for e in df.environments.list()]

    assert made["id"] not in await asyncio.to_thread(sync_side)
