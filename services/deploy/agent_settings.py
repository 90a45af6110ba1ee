"""What an agent is configured with: where it works, and how long each step may take."""

from __future__ import annotations

from libs.settings import CoreSettings


class AgentSettings(CoreSettings, frozen=True, kw_only=True):
    agent_id: str = ""
    work_dir: str = ".deployforge/agent"
    # Where the stable addresses listen.
    proxy_host: str = "127.0.0.1"
    keep_releases: int = 3
    build_timeout_seconds: float = 900.0
    health_timeout_seconds: float = 60.0
    # How long the old release keeps answering requests already sent to it.
    drain_seconds: float = 5.0
    concurrency: int = 4
    # Releases keep serving when the agent stops, for the next agent to adopt.
    # Off (tests, throwaway agents): stopping the agent stops its releases.
    detach_on_stop: bool = True
    # Where a deployment's scripts reach the API with their deployment token.
    api_url: str = "http://127.0.0.1:8080"
