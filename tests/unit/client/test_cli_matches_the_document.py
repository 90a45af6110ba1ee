"""dfctl's choices are the API's: a flag that offers a value the document does not
accept (or misses one it does) fails here, not in a user's terminal with a 422."""

from __future__ import annotations

import click
from deployforge_client.cli import main

from gateway import app  # noqa: F401  (registers every route)
from gateway.openapi import document


def _choices(*path: str, option: str) -> set[str]:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, path
        command = found
    [param] = [p for p in command.params if option in getattr(p, "opts", [])]
    assert isinstance(param.type, click.Choice)
    return {str(c) for c in param.type.choices}


def _enum(schema: str, field: str) -> set[str]:
    prop = document()["components"]["schemas"][schema]["properties"][field]
    return set(prop.get("items", prop)["enum"])


def test_deploy_strategies_are_the_apis() -> None:
    assert _choices("deploy", option="--strategy") == _enum("FromService", "strategy")


def test_environment_types_are_the_apis() -> None:
    assert _choices("envs", "create", option="--type") == _enum("EnvironmentBody", "type")


def test_token_scopes_are_the_apis() -> None:
    assert _choices("tokens", "create", option="--scope") == _enum("NewToken", "scopes")


def test_step_states_and_finish_statuses_are_the_apis() -> None:
    assert _choices("step", "report", option="--state") == _enum("StepReport", "state")
    assert _choices("step", "finish", option="--status") == _enum("FinishBody", "status")
