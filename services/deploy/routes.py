"""A route: a service in an environment on an agent, its stable port and live release.

Routes are kept on disk (`routes.json` in the agent's work directory) with what
their instances run, so that a restarted agent adopts or restarts them.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class Route(msgspec.Struct, kw_only=True):
    """A service in an environment on this agent: its stable port and live release."""

    listen_port: int
    release_id: str | None = None
    instances: list[str] = []
    ports: list[int] = []
    # What the instances run, to adopt or restart them after an agent restart.
    # No env: it may hold secrets, and is asked for again then.
    service_id: str = ""
    argv: list[str] = []
    # The release's deployforge.yml gave the command (not the service's run_command).
    argv_from_manifest: bool = False
    cwd: str = ""
    health_check_path: str = "/"
    replicas: int = 1
    deployment_id: str = ""
    # Non-secret defaults from the release's deployforge.yml (secrets are asked for).
    env_defaults: dict[str, str] = {}
    # The names (never the values) of the variables the instances were given, for drift
    # scans; None for a route recorded before agents kept them.
    env_names: list[str] | None = None
    # Stopped on request: the release is kept, the address answers 503.
    stopped: bool = False
    # Instances (of `instances`) stopped one by one on request: kept, for a start.
    stopped_instances: list[str] = []

    def running(self) -> list[tuple[str, int]]:
        """The instances that should be running, with their ports."""
        pairs = zip(self.instances, self.ports, strict=True)
        return [(i, port) for i, port in pairs if i not in self.stopped_instances]

    def serving_port(self) -> int | None:
        """Where the stable address sends requests: the first running instance."""
        running = self.running()
        return running[0][1] if running else None

    def instance_env(self, service_env: dict[str, str], port: int) -> dict[str, str]:
        """An instance's environment when started again (a restart, or after adoption)."""
        return {
            **base_env(Path(self.cwd)),
            **self.env_defaults,
            **service_env,
            "PORT": str(port),
            "DEPLOYFORGE_DEPLOYMENT_ID": self.deployment_id,
        }


def base_env(release: Path) -> dict[str, str]:
    """The agent's own environment as a build or an instance in `release` sees it."""
    # A build or an instance gets nothing of the agent's own environment but these.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(release),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    return env
