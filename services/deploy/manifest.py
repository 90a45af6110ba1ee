"""`deployforge.yml`: a repository may say how it is built and run (the seeds' manifest_url).

The manifest is read from the checkout at the deployed ref, so it travels with
the code it describes. Its build and run commands, port, health check path and
replicas replace the service's; its `env` gives defaults that the service's own
env vars (set through the API, secrets included) override.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from services.deploy.commands import CommandLine, JobSpec
from services.deploy.runner import parse_command

NAMES = ("deployforge.yml", "deployforge.yaml")
MAX_BYTES = 64 * 1024


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    build_command: CommandLine | None = None
    run_command: CommandLine | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    health_check_path: Annotated[str, Meta(max_length=512, pattern=r"^/")] | None = None
    replicas: Annotated[int, Meta(ge=1, le=20)] | None = None
    env: dict[Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], str] = {}


class ManifestInvalid(Exception):
    pass


def load(checkout: Path) -> tuple[str, Manifest] | None:
    """The manifest in a checkout (its file name and content), or None if it has none."""
    for name in NAMES:
        path = checkout / name
        if path.is_file():
            if path.stat().st_size > MAX_BYTES:
                raise ManifestInvalid(f"{name} is larger than {MAX_BYTES} bytes")
            try:
                return name, msgspec.yaml.decode(path.read_bytes(), type=Manifest)
            except msgspec.ValidationError as exc:
                raise ManifestInvalid(f"{name}: {exc}") from None
            except msgspec.DecodeError as exc:
                raise ManifestInvalid(f"{name} is not valid YAML: {exc}") from None
    return None


def apply(spec: JobSpec, manifest: Manifest) -> JobSpec:
    """The job as the manifest says to build and run it."""
    changes: dict[str, object] = {}
    if manifest.build_command is not None:
        changes["build_command"] = parse_command(manifest.build_command, "build_command")
    if manifest.run_command is not None:
        changes["run_command"] = parse_command(manifest.run_command, "run_command")
    for field in ("port", "health_check_path", "replicas"):
        value = getattr(manifest, field)
        if value is not None:
            changes[field] = value
    changes["manifest_fields"] = sorted(
        name
        for name in ("build_command", "run_command", "port", "health_check_path", "replicas")
        if getattr(manifest, name) is not None
    )
    changes["env"] = {**manifest.env, **spec.env}
    changes["manifest_env"] = dict(manifest.env)
    return msgspec.structs.replace(spec, **changes)
