"""Typed settings read from `DEPLOYFORGE_*` environment variables.

Each process declares one `msgspec.Struct` of settings (usually extending
`CoreSettings`); `load_settings` fills it from the environment, converting
strings to the declared types and naming the variable when one is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

PREFIX = "DEPLOYFORGE_"


class CoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every DeployForge process needs: where the servers are and who it is."""

    nats_url: str = "nats://127.0.0.1:4222"
    # A NATS credentials file (JWT + nkey seed), e.g. for an agent on another
    # machine; a user:password or token can also go in the URL.
    nats_credentials: str = ""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/deployforge"
    # Prefix for every stream, subject and service name: lets several suites
    # (or tests) share one NATS server without seeing each other.
    namespace: str = ""
    # Master key (base64, 32 bytes) sealing secrets at rest. `deployforge up`
    # generates one into the data directory.
    secret_key: str = ""
    log_level: str = "info"
    log_format: str = "auto"
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    stream_replicas: int = 1
    otel_console: bool = False


S = TypeVar("S", bound=msgspec.Struct)


class SettingsError(ValueError):
    pass


def load_settings(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Build `cls` from `DEPLOYFORGE_<FIELD>` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        key = PREFIX + field.name.upper()
        if key in env:
            raw[field.name] = env[key]
    raw.update(overrides)
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_variable(str(exc))) from None


def _name_variable(message: str) -> str:
    # msgspec says "... - at `$.port`"; users set DEPLOYFORGE_PORT, so say that.
    if "`$." in message:
        head, _, tail = message.partition("`$.")
        field = tail.split("`", 1)[0]
        return f"{head}{PREFIX}{field.upper()}"
    return message


def to_environ(settings: msgspec.Struct) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a child process."""
    out: dict[str, str] = {}
    for field in msgspec.structs.fields(type(settings)):
        value = getattr(settings, field.name)
        if isinstance(value, bool):
            out[PREFIX + field.name.upper()] = "true" if value else "false"
        else:
            out[PREFIX + field.name.upper()] = str(value)
    return out
