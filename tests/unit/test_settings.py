"""Settings from DEPLOYFORGE_* variables: typed, and errors name the variable to fix."""

from __future__ import annotations

import pytest

from libs.settings import CoreSettings, SettingsError, load_settings, to_environ


class Settings(CoreSettings, frozen=True, kw_only=True):
    port: int = 8080
    debug: bool = False


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load_settings(Settings, {})

    assert settings == Settings()


def test_strings_are_converted_to_the_declared_types() -> None:
    settings = load_settings(
        Settings,
        {
            "DEPLOYFORGE_PORT": "9000",
            "DEPLOYFORGE_DEBUG": "true",
            "DEPLOYFORGE_STREAM_REPLICAS": "3",
            "DEPLOYFORGE_OTEL_CONSOLE": "false",
            "DEPLOYFORGE_NATS_URL": "nats://nats:4222",
        },
    )

    assert settings.port == 9000
    assert settings.debug is True
    assert settings.stream_replicas == 3
    assert settings.otel_console is False
    assert settings.nats_url == "nats://nats:4222"


def test_variables_without_the_prefix_or_for_unknown_fields_are_ignored() -> None:
    settings = load_settings(Settings, {"PORT": "1", "DEPLOYFORGE_NOPE": "x"})

    assert settings.port == 8080


def test_explicit_overrides_win_over_the_environment() -> None:
    settings = load_settings(Settings, {"DEPLOYFORGE_PORT": "9000"}, port=9100)

    assert settings.port == 9100


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DEPLOYFORGE_PORT", "eighty"), ("DEPLOYFORGE_DEBUG", "maybe")],
)
def test_a_bad_value_names_the_variable_to_fix(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(Settings, {variable: value})

    assert variable in str(caught.value)
    assert "`$." not in str(caught.value)


def test_the_environment_is_read_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYFORGE_PORT", "9001")

    assert load_settings(Settings).port == 9001


def test_to_environ_reproduces_the_settings() -> None:
    settings = Settings(port=9000, debug=True, namespace="t1", stream_replicas=3)

    environ = to_environ(settings)

    assert environ["DEPLOYFORGE_DEBUG"] == "true"
    assert environ["DEPLOYFORGE_PORT"] == "9000"
    assert load_settings(Settings, environ) == settings
