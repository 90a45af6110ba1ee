"""A user's build or run command becomes an argv list; no shell ever reads it."""

import pytest

from libs.errors import ValidationFailed
from services.deploy.runner import parse_command


def test_a_string_is_split_like_a_shell_would_but_nothing_is_interpreted() -> None:
    argv = parse_command("npm run build -- --out 'dist dir' ; rm -rf / $(id) *.js")
    assert argv == [
        "npm", "run", "build", "--", "--out", "dist dir", ";", "rm", "-rf", "/", "$(id)", "*.js"
    ]  # fmt: skip


def test_a_list_is_kept_as_it_is() -> None:
    assert parse_command(["python", "-m", "app", "a b"]) == ["python", "-m", "app", "a b"]


@pytest.mark.parametrize("command", ["", "   ", [], [""], "'unbalanced", ["ok", "nul\x00"]])
def test_empty_or_unparsable_commands_are_rejected_naming_the_field(
    command: str | list[str],
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_command(command, "$.run_command")
    assert caught.value.details["field"] == "$.run_command"


def test_the_build_command_is_the_default_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_command("")
    assert caught.value.details["field"] == "$.build_command"
