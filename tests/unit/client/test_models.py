"""The SDK's models are generated from the OpenAPI document and committed: this fails
when they disagree (run `make models` after changing a route's schemas)."""

from __future__ import annotations

import importlib.util
import typing
from pathlib import Path

from deployforge_client import models

from gateway import app  # noqa: F401  (registers every route)
from gateway.openapi import document

GENERATOR = Path(__file__).resolve().parents[3] / "client" / "generate_models.py"


def _generator() -> typing.Any:
    spec = importlib.util.spec_from_file_location("generate_models", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_models_are_the_documents() -> None:
    generated = _generator().render(document())
    committed = Path(models.__file__).read_text()
    assert committed == generated, "the models are stale: run `make models`"


def test_models_know_required_and_optional_keys() -> None:
    assert {"id", "status", "service_id", "logs_url"} <= models.Deployment.__required_keys__
    hints = typing.get_type_hints(models.PageDeployment)
    assert hints["items"] == list[models.Deployment]
    assert "next_cursor" in models.PageDeployment.__optional_keys__
