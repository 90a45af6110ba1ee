"""What an agent asks of the deploy service, which records the answers as events."""

from __future__ import annotations

import contextlib

import msgspec
import structlog

from libs.errors import DomainError
from libs.messaging import CommandBus

log = structlog.get_logger("agent")


class DeployClient:
    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus

    async def agent_start(self, deployment_id: str, agent_id: str) -> bytes:
        """The job's details (an encoded JobSpec); a DomainError if it is not ours to run."""
        result = await self.bus.request(
            "deploy",
            "agent_start",
            {"deployment_id": deployment_id, "agent_id": agent_id},
        )
        return result.data

    async def report_step(
        self,
        deployment_id: str,
        name: str,
        state: str,
        *,
        message: str = "",
        error_message: str = "",
    ) -> None:
        with contextlib.suppress(DomainError):
            await self.bus.request(
                "deploy",
                "report_step",
                {
                    "deployment_id": deployment_id,
                    "name": name,
                    "state": state,
                    "message": message[:4000],
                    "error_message": error_message[:4000],
                },
            )

    async def finish(
        self,
        deployment_id: str,
        *,
        succeeded: bool,
        reason: str = "",
        step: str | None = None,
        commit_hash: str | None = None,
        release_id: str | None = None,
        address: str | None = None,
    ) -> None:
        try:
            await self.bus.request(
                "deploy",
                "agent_finish",
                {
                    "deployment_id": deployment_id,
                    "succeeded": succeeded,
                    "reason": reason[:4000],
                    "step": step,
                    "commit_hash": commit_hash,
                    "release_id": release_id,
                    "address": address,
                },
            )
        except DomainError as exc:
            # Cancelled meanwhile: the deployment already ended.
            log.info("finish_refused", deployment_id=deployment_id, reason=exc.message)

    async def service_env(self, service_id: str) -> dict[str, str]:
        try:
            result = await self.bus.request("deploy", "service_env", {"service_id": service_id})
        except DomainError as exc:
            log.warning("service_env_unavailable", service_id=service_id, error=exc.message)
            return {}
        env: dict[str, str] = msgspec.json.decode(result.data, type=dict[str, str])
        return env
